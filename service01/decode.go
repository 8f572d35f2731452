package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of a POST /ping request.
const (
	maxBodyBytes = 16 << 10 // 16 KiB, the gateway's client_max_body_size too
	maxMsgRunes  = 1024
)

// example is the request body the error details suggest.
const example = `{"msg":"hello"}`

// pingRequest is the body of POST /ping.
type pingRequest struct {
	Msg string
}

// decodePing parses and validates the body of POST /ping. It is a pure
// function of the bytes so that it can be fuzzed. Its errors are meant for
// the client: each is a sentence saying what is wrong and what to send.
//
// The body must be exactly one JSON object with one member, "msg", a string
// of 1 to 1024 characters that is not blank and has no control characters
// other than tab, newline and carriage return.
func decodePing(body []byte) (pingRequest, error) {
	// encoding/json would silently turn invalid UTF-8 into U+FFFD; refuse it
	// instead, so that what is stored is exactly what was sent.
	if !utf8.Valid(body) {
		return pingRequest{}, invalidf("The body is not valid UTF-8 (the first invalid byte is at offset %d); send the JSON encoded as UTF-8.", invalidUTF8Offset(body))
	}

	// First the syntax, with a precise position for mistakes.
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		if errors.Is(err, io.EOF) {
			return pingRequest{}, invalidf("The body is empty; send a JSON object such as %s.", example)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return pingRequest{}, invalidf("The body ends before its JSON value is complete; send a whole JSON object such as %s.", example)
		}
		if syntaxErr, ok := errors.AsType[*json.SyntaxError](err); ok {
			return pingRequest{}, invalidf("The body is not valid JSON: %s (at byte %d); fix the syntax, e.g. %s.", err, syntaxErr.Offset, example)
		}
		return pingRequest{}, invalidf("The body could not be read as JSON (%s); send a JSON object such as %s.", err, example)
	}
	if rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return pingRequest{}, invalidf("The body has more data after the JSON object, at byte %d; send exactly one JSON object such as %s.", len(body)-len(rest)+1, example)
	}
	if obj[0] != '{' {
		return pingRequest{}, invalidf("The body is %s; it must be a JSON object such as %s.", jsonKind(obj), example)
	}

	// Then the members. encoding/json keeps the last of duplicate keys and
	// matches keys case-insensitively ("MSG" would fill Msg), so walk the
	// tokens: every key is seen exactly as sent.
	msg, err := pingMember(obj)
	if err != nil {
		return pingRequest{}, err
	}
	if msg == nil || string(msg) == "null" {
		return pingRequest{}, invalidf("msg is required; send a JSON object such as %s.", example)
	}
	if msg[0] != '"' {
		return pingRequest{}, invalidf("msg must be a string, not %s; send it in double quotes, e.g. %s.", jsonKind(msg), example)
	}
	// encoding/json would also turn an escaped half of a UTF-16 surrogate
	// pair into U+FFFD: refuse it for the same reason as invalid UTF-8.
	if esc := unpairedSurrogate(msg); esc != "" {
		return pingRequest{}, invalidf(`msg contains the escape %s, half of a UTF-16 surrogate pair without the other half; send the character itself or both halves, e.g. "\ud83d\udc4b" for 👋.`, esc)
	}
	var s string
	if err := json.Unmarshal(msg, &s); err != nil {
		return pingRequest{}, invalidf("msg could not be read as a string (%s); send it in double quotes, e.g. %s.", err, example)
	}

	if strings.TrimSpace(s) == "" {
		return pingRequest{}, invalidf("msg is empty or only white space; send some text, e.g. %s.", example)
	}
	if n := utf8.RuneCountInString(s); n > maxMsgRunes {
		return pingRequest{}, invalidf("msg is %d characters long; the limit is %d, send a shorter text.", n, maxMsgRunes)
	}
	pos := 0
	for _, r := range s {
		pos++
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return pingRequest{}, invalidf("msg contains the control character %U at character %d; remove it (tab, newline and carriage return are the only ones allowed).", r, pos)
		}
	}
	// The text is kept as sent, not trimmed: it is the client's message.
	return pingRequest{Msg: s}, nil
}

// pingMember walks the members of obj, a syntactically valid JSON object,
// and returns the raw value of "msg" (nil when absent). Any other key, or
// "msg" twice, is an error.
func pingMember(obj []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // the opening '{'
		return nil, invalidf("The body could not be read as a JSON object (%s); send one such as %s.", err, example)
	}
	var msg json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidf("The body could not be read as a JSON object (%s); send one such as %s.", err, example)
		}
		key, _ := tok.(string) // a key is always a string in a valid object
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, invalidf("The value of %q could not be read (%s); send a JSON object such as %s.", key, err, example)
		}
		switch {
		case key != "msg":
			return nil, invalidf("The field %q is not known; the only field is \"msg\", e.g. %s.", key, example)
		case msg != nil:
			return nil, invalidf("The field \"msg\" appears more than once; send it once, e.g. %s.", example)
		}
		msg = value
	}
	return msg, nil
}

// unpairedSurrogate returns the first \uXXXX escape in lit, a valid JSON
// string literal, that is half of a UTF-16 surrogate pair without the other
// half, or "" when there is none.
func unpairedSurrogate(lit []byte) string {
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++ // the escaped character: a valid literal has one
		if lit[i] != 'u' {
			continue
		}
		esc := lit[i-1 : i+5] // \uXXXX: a valid literal has four hex digits
		r := hex4(lit[i+1 : i+5])
		i += 4
		if !utf16.IsSurrogate(r) {
			continue
		}
		// A high half (D800-DBFF) followed by a low half (DC00-DFFF) is one
		// character; any other surrogate is unpaired.
		if r < 0xdc00 && i+6 < len(lit) && lit[i+1] == '\\' && lit[i+2] == 'u' {
			if low := hex4(lit[i+3 : i+7]); 0xdc00 <= low && low <= 0xdfff {
				i += 6
				continue
			}
		}
		return string(esc)
	}
	return ""
}

// hex4 decodes the four hex digits of a \uXXXX escape.
func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b), 16, 32) // checked by the JSON syntax
	return rune(n)
}

// jsonKind names the kind of a valid JSON value, for error details.
func jsonKind(v []byte) string {
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// invalidUTF8Offset returns the offset of the first byte of b that is not
// part of a valid UTF-8 sequence.
func invalidUTF8Offset(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// invalidRequestError is a mistake in the request. Its text is the problem
// detail the client gets, so unlike most error strings it is a sentence.
type invalidRequestError struct {
	detail string
}

func (e *invalidRequestError) Error() string { return e.detail }

func invalidf(format string, args ...any) error {
	return &invalidRequestError{detail: fmt.Sprintf(format, args...)}
}
