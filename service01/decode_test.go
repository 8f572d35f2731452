package main

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestDecodePing(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantMsg string // when the body is valid
		wantErr string // a part of the error, when it is not
	}{
		{name: "simple", body: `{"msg":"hello"}`, wantMsg: "hello"},
		{name: "white space around", body: " \n\t{ \"msg\" : \"hello\" }\r\n ", wantMsg: "hello"},
		{name: "kept as sent, not trimmed", body: `{"msg":"  hello\n"}`, wantMsg: "  hello\n"},
		{name: "tab newline and carriage return allowed", body: `{"msg":"a\tb\nc\rd"}`, wantMsg: "a\tb\nc\rd"},
		{name: "escapes", body: `{"msg":"caf\u00e9 \"quoted\""}`, wantMsg: `café "quoted"`},
		{name: "multi-byte UTF-8", body: `{"msg":"héllo wörld 👋"}`, wantMsg: "héllo wörld 👋"},
		{name: "surrogate pair escape", body: `{"msg":"a\ud83d\udc4Bb"}`, wantMsg: "a👋b"},
		{name: "escaped backslash before u", body: `{"msg":"\\ud800"}`, wantMsg: `\ud800`},
		{name: "escaped replacement character", body: `{"msg":"\ufffd"}`, wantMsg: "\ufffd"},
		{name: "1024 characters", body: `{"msg":"` + strings.Repeat("é", 1024) + `"}`, wantMsg: strings.Repeat("é", 1024)},

		{name: "invalid UTF-8", body: "{\"msg\":\"a\xffb\"}", wantErr: "not valid UTF-8 (the first invalid byte is at offset 9)"},
		{name: "lone high surrogate", body: `{"msg":"a\ud800"}`, wantErr: `msg contains the escape \ud800, half of a UTF-16 surrogate pair`},
		{name: "lone low surrogate", body: `{"msg":"\uDC00a"}`, wantErr: `msg contains the escape \uDC00, half`},
		{name: "high surrogate then a letter", body: `{"msg":"\ud83dx\udc4b"}`, wantErr: `msg contains the escape \ud83d, half`},
		{name: "two high surrogates", body: `{"msg":"\ud83d\ud83d"}`, wantErr: `msg contains the escape \ud83d, half`},
		{name: "high surrogate then an escape", body: `{"msg":"\ud83d\n"}`, wantErr: `msg contains the escape \ud83d, half`},
		{name: "empty body", body: "", wantErr: "The body is empty"},
		{name: "only white space", body: " \n ", wantErr: "The body is empty"},
		{name: "syntax error", body: `{"msg" "x"}`, wantErr: "not valid JSON: invalid character '\"' after object key (at byte 8)"},
		{name: "trailing comma", body: `{"msg":"x",}`, wantErr: "not valid JSON"},
		{name: "raw newline in string", body: "{\"msg\":\"a\nb\"}", wantErr: "not valid JSON"},
		{name: "truncated", body: `{"msg":"x"`, wantErr: "ends before its JSON value is complete"},
		{name: "trailing data", body: `{"msg":"x"} extra`, wantErr: "more data after the JSON object, at byte 13"},
		{name: "two objects", body: `{"msg":"x"}{"msg":"y"}`, wantErr: "more data after the JSON object, at byte 12"},
		{name: "array", body: `["hello"]`, wantErr: "The body is an array; it must be a JSON object"},
		{name: "string", body: `"hello"`, wantErr: "The body is a string; it must be a JSON object"},
		{name: "number", body: `42`, wantErr: "The body is a number; it must be a JSON object"},
		{name: "null body", body: `null`, wantErr: "The body is null; it must be a JSON object"},
		{name: "duplicate key", body: `{"msg":"a","msg":"b"}`, wantErr: `The field "msg" appears more than once`},
		{name: "unknown field", body: `{"msg":"a","from":"me"}`, wantErr: `The field "from" is not known`},
		{name: "field names are case-sensitive", body: `{"MSG":"a"}`, wantErr: `The field "MSG" is not known`},
		{name: "missing msg", body: `{}`, wantErr: "msg is required"},
		{name: "null msg", body: `{"msg":null}`, wantErr: "msg is required"},
		{name: "number msg", body: `{"msg":42}`, wantErr: "msg must be a string, not a number"},
		{name: "array msg", body: `{"msg":["a"]}`, wantErr: "msg must be a string, not an array"},
		{name: "object msg", body: `{"msg":{"a":1}}`, wantErr: "msg must be a string, not an object"},
		{name: "boolean msg", body: `{"msg":true}`, wantErr: "msg must be a string, not a boolean"},
		{name: "empty msg", body: `{"msg":""}`, wantErr: "msg is empty or only white space"},
		{name: "blank msg", body: `{"msg":" \t\n "}`, wantErr: "msg is empty or only white space"},
		{name: "1025 characters", body: `{"msg":"` + strings.Repeat("é", 1025) + `"}`, wantErr: "msg is 1025 characters long; the limit is 1024"},
		{name: "NUL", body: `{"msg":"ab\u0000c"}`, wantErr: "control character U+0000 at character 3"},
		{name: "escape character", body: `{"msg":"é\u001b[31m"}`, wantErr: "control character U+001B at character 2"},
		{name: "DEL", body: `{"msg":"a\u007f"}`, wantErr: "control character U+007F at character 2"},
		{name: "C1 control", body: `{"msg":"a` + "\u0085" + `"}`, wantErr: "control character U+0085 at character 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodePing([]byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodePing(%q): unexpected error %q", tt.body, err)
				}
				if req.Msg != tt.wantMsg {
					t.Errorf("msg = %q, want %q", req.Msg, tt.wantMsg)
				}
				return
			}
			if err == nil {
				t.Fatalf("decodePing(%q) = %+v, want an error containing %q", tt.body, req, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			// Every detail is a sentence saying what to do.
			if d := err.Error(); !strings.HasSuffix(d, ".") {
				t.Errorf("error %q is not a sentence", d)
			}
		})
	}
}

// FuzzDecodePing checks decodePing's promises on any input: it never
// panics, what it accepts is a valid msg, and what it refuses it explains.
func FuzzDecodePing(f *testing.F) {
	for _, seed := range []string{
		`{"msg":"hello"}`,
		`{"msg":"  hello\n"}`,
		`{"msg":"héllo 👋"}`,
		`{"msg":"` + strings.Repeat("x", 1024) + `"}`,
		`{"msg":"` + strings.Repeat("x", 1025) + `"}`,
		"{\"msg\":\"a\xffb\"}",
		"",
		`{"msg" "x"}`,
		`{"msg":"x"`,
		`{"msg":"x"} extra`,
		`["hello"]`,
		`null`,
		`{"msg":"a","msg":"b"}`,
		`{"msg":"a","from":"me"}`,
		`{"MSG":"a"}`,
		`{}`,
		`{"msg":null}`,
		`{"msg":42}`,
		`{"msg":" "}`,
		`{"msg":"a\u0000b"}`,
		`{"msg":"\ud800"}`,
		`{"msg":"a\u0085"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodePing(body)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("decodePing(%q): empty error message", body)
			}
			return
		}
		msg := req.Msg
		// Nothing is replaced on the way: a U+FFFD in msg was sent as one.
		if strings.ContainsRune(msg, utf8.RuneError) && !strings.ContainsRune(string(body), utf8.RuneError) && !strings.Contains(strings.ToLower(string(body)), `\ufffd`) {
			t.Fatalf("accepted msg %q has a U+FFFD the body %q does not", msg, body)
		}
		if !utf8.ValidString(msg) {
			t.Fatalf("accepted msg %q is not valid UTF-8", msg)
		}
		if n := utf8.RuneCountInString(msg); n < 1 || n > maxMsgRunes {
			t.Fatalf("accepted msg %q has %d characters", msg, n)
		}
		if strings.TrimSpace(msg) == "" {
			t.Fatalf("accepted blank msg %q", msg)
		}
		for _, r := range msg {
			if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
				t.Fatalf("accepted msg %q with control character %U", msg, r)
			}
		}
	})
}
