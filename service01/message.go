package main

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// dateLayout is the message's date format: RFC 3339 in UTC with exactly six
// fractional digits (microseconds), e.g. 2026-11-22T09:15:02.123456Z. A fixed
// width sorts as text and reads the same in every log and UI.
const dateLayout = "2006-01-02T15:04:05.000000Z"

// message is what service01 publishes and what POST /ping answers with. The
// format is documented in docs/reference and shared with service02 only
// through that document and its golden example, not through Go code.
type message struct {
	ID        string `json:"id"`
	Msg       string `json:"msg"`
	Date      string `json:"date"`
	RequestID string `json:"request_id"`
}

// newMessage stamps msg with a new id and the current time.
func newMessage(msg, requestID string, now time.Time) message {
	return message{
		ID:        newUUID(),
		Msg:       msg,
		Date:      now.UTC().Format(dateLayout),
		RequestID: requestID,
	}
}

// newUUID returns a random (version 4) UUID in its canonical text form.
func newUUID() string {
	var b [16]byte
	// crypto/rand.Read never returns an error: it crashes the program instead
	// if the system's random source fails (Go 1.24 and later).
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // variant 10 (RFC 9562)

	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
