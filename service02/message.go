package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// message is one ping as service01 publishes it (docs/reference describes
// the format; ../docs/reference/message.example.json is an example).
type message struct {
	ID        string
	Msg       string
	Date      string // kept as sent; decodeMessage checked it is RFC 3339
	RequestID string // optional: "" when the producer sent none
}

const (
	// maxBodyBytes bounds what decodeMessage parses. service01's messages
	// are a few hundred bytes; anything this large is not one of them.
	maxBodyBytes = 64 << 10
	// maxIDChars bounds a message id, in characters (service01's are UUIDs).
	maxIDChars = 64
)

// decodeMessage parses and checks an AMQP body. It accepts a JSON object with
// the members id, msg, date and optionally request_id, and ignores any other
// member, so that a newer producer may add fields without breaking this
// consumer. Member names match exactly (encoding/json alone would also take
// "ID" for "id").
func decodeMessage(body []byte) (message, error) {
	if len(body) > maxBodyBytes {
		return message{}, fmt.Errorf("body is %d bytes, over the %d-byte limit", len(body), maxBodyBytes)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return message{}, fmt.Errorf("body is not a JSON object: %w", err)
	}
	if members == nil { // the body was null
		return message{}, errors.New("body is not a JSON object: null")
	}

	var m message
	var err error
	if m.ID, err = stringMember(members, "id", true); err != nil {
		return message{}, err
	}
	if m.ID == "" {
		return message{}, errors.New(`"id" is empty`)
	}
	if n := utf8.RuneCountInString(m.ID); n > maxIDChars {
		return message{}, fmt.Errorf(`"id" is %d characters long, over the %d-character limit`, n, maxIDChars)
	}
	if m.Msg, err = stringMember(members, "msg", true); err != nil {
		return message{}, err
	}
	if m.Date, err = stringMember(members, "date", true); err != nil {
		return message{}, err
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Date); err != nil {
		return message{}, fmt.Errorf(`"date" is not an RFC 3339 date and time: %q`, truncate(m.Date, 40))
	}
	if m.RequestID, err = stringMember(members, "request_id", false); err != nil {
		return message{}, err
	}
	return m, nil
}

// stringMember returns the string member name of an object. An optional
// member may be missing or null.
func stringMember(members map[string]json.RawMessage, name string, required bool) (string, error) {
	raw, ok := members[name]
	if !ok || bytes.Equal(raw, []byte("null")) {
		if required {
			return "", fmt.Errorf("%q is missing", name)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%q is not a string: %s", name, truncate(string(raw), 40))
	}
	return s, nil
}

// truncate shortens s to at most n bytes, on a character boundary, for
// quoting untrusted input in messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
