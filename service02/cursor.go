package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// A cursor is the opaque "next" of GET /pong: the store's epoch and the
// sequence number of the last message returned, base64url-encoded so that
// clients treat it as a token, not as a number to compute with.

// encodeCursor returns the cursor that continues after message seq of the
// store with the given epoch.
func encodeCursor(epoch, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%016x:%d", epoch, seq))
}

var errBadCursor = errors.New("not a cursor from GET /pong")

// decodeCursor reverses encodeCursor. It is strict: only a string
// encodeCursor could have produced is accepted.
func decodeCursor(s string) (epoch, seq uint64, err error) {
	if len(s) > 64 { // the longest cursor is 50 characters
		return 0, 0, errBadCursor
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return 0, 0, errBadCursor
	}
	epochHex, seqDec, ok := strings.Cut(string(b), ":")
	if !ok {
		return 0, 0, errBadCursor
	}
	epoch, err1 := strconv.ParseUint(epochHex, 16, 64)
	seq, err2 := strconv.ParseUint(seqDec, 10, 64)
	// Re-encoding rejects every other spelling of the same numbers
	// (upper-case hex, leading zeros, ...).
	if err1 != nil || err2 != nil || seq == 0 || encodeCursor(epoch, seq) != s {
		return 0, 0, errBadCursor
	}
	return epoch, seq, nil
}
