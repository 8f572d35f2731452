package main

import (
	"strings"
	"testing"
)

// FuzzDecodeCursor checks decodeCursor's promises on any input, since the
// after parameter of GET /pong comes straight from clients: it never panics,
// and it accepts only what encodeCursor writes, so every accepted cursor
// has exactly one spelling and a sequence number of at least 1.
func FuzzDecodeCursor(f *testing.F) {
	for _, seed := range []string{
		encodeCursor(0, 1),
		encodeCursor(0xdeadbeefcafef00d, 42),
		encodeCursor(^uint64(0), ^uint64(0)),
		"", "garbage!", "MTIz", "=", "====",
		encodeCursor(1, 2) + "=",
		strings.ToUpper(encodeCursor(0xabc, 7)),
		strings.Repeat("A", 65),
		"MDAwMDAwMDAwMDAwMDAwMDow",    // seq 0
		"MDAwMDAwMDAwMDAwMDAwMDowMQ",  // seq with a leading zero
		"MDAwMDAwMDAwMDAwMDAwMDotMQ",  // seq -1
		"MDAwMDAwMDAwMDAwMDAwMDoxOjI", // a second colon
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		epoch, seq, err := decodeCursor(s)
		if err != nil {
			if err != errBadCursor {
				t.Fatalf("decodeCursor(%q): error %v, want errBadCursor", s, err)
			}
			return
		}
		if seq == 0 {
			t.Fatalf("decodeCursor(%q) accepted sequence number 0", s)
		}
		if again := encodeCursor(epoch, seq); again != s {
			t.Fatalf("decodeCursor(%q) = %x, %d, which encodes as %q", s, epoch, seq, again)
		}
	})
}
