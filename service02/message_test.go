package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// goldenPath is the example message both services' tests read.
const goldenPath = "../docs/reference/message.example.json"

func mustReadGolden(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		tb.Fatalf("read the golden message: %v", err)
	}
	return b
}

func TestDecodeMessageGolden(t *testing.T) {
	m, err := decodeMessage(mustReadGolden(t))
	if err != nil {
		t.Fatalf("decodeMessage(%s) = %v", goldenPath, err)
	}
	want := message{
		ID:        "0b7e4f3c-5d2a-4e8b-9c1f-6a3d2e1b0c9f",
		Msg:       "hello",
		Date:      "2026-11-22T09:15:02.123456Z",
		RequestID: "tutorial-1",
	}
	if m != want {
		t.Errorf("decodeMessage(golden) = %+v, want %+v", m, want)
	}
}

func TestDecodeMessageAccepts(t *testing.T) {
	id64 := strings.Repeat("é", 64) // 64 characters, 128 bytes
	tests := []struct {
		name string
		body string
		want message
	}{
		{"extra members are ignored",
			`{"id":"a","msg":"m","date":"2026-11-22T09:15:02Z","request_id":"r","version":2,"tags":["x"]}`,
			message{ID: "a", Msg: "m", Date: "2026-11-22T09:15:02Z", RequestID: "r"}},
		{"request_id missing",
			`{"id":"a","msg":"m","date":"2026-11-22T09:15:02Z"}`,
			message{ID: "a", Msg: "m", Date: "2026-11-22T09:15:02Z"}},
		{"request_id null",
			`{"id":"a","msg":"m","date":"2026-11-22T09:15:02Z","request_id":null}`,
			message{ID: "a", Msg: "m", Date: "2026-11-22T09:15:02Z"}},
		{"empty msg, offset date, whitespace",
			" {\n\"id\" : \"a\", \"msg\": \"\", \"date\": \"2026-11-22T10:15:02.5+01:00\"}\n",
			message{ID: "a", Date: "2026-11-22T10:15:02.5+01:00"}},
		{"id of 64 characters",
			`{"id":"` + id64 + `","msg":"m","date":"2026-11-22T09:15:02Z"}`,
			message{ID: id64, Msg: "m", Date: "2026-11-22T09:15:02Z"}},
		{"escapes",
			`{"id":"a\u00e9","msg":"line\nbreak \"quoted\"","date":"2026-11-22T09:15:02Z"}`,
			message{ID: "aé", Msg: "line\nbreak \"quoted\"", Date: "2026-11-22T09:15:02Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeMessage([]byte(tt.body))
			if err != nil {
				t.Fatalf("decodeMessage = %v, want it accepted", err)
			}
			if got != tt.want {
				t.Errorf("decodeMessage = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	const date = `"date":"2026-11-22T09:15:02Z"`
	tests := []struct {
		name    string
		body    string
		wantErr string
	}{
		{"empty body", ``, "not a JSON object"},
		{"not JSON", `hello`, "not a JSON object"},
		{"truncated JSON", `{"id":"a","msg":"m",`, "not a JSON object"},
		{"null", `null`, "not a JSON object"},
		{"array", `[{"id":"a"}]`, "not a JSON object"},
		{"string", `"a"`, "not a JSON object"},
		{"number", `42`, "not a JSON object"},
		{"trailing data", `{"id":"a","msg":"m",` + date + `} {}`, "not a JSON object"},
		{"missing id", `{"msg":"m",` + date + `}`, `"id" is missing`},
		{"upper-case ID only", `{"ID":"a","msg":"m",` + date + `}`, `"id" is missing`},
		{"null id", `{"id":null,"msg":"m",` + date + `}`, `"id" is missing`},
		{"numeric id", `{"id":5,"msg":"m",` + date + `}`, `"id" is not a string`},
		{"object id", `{"id":{"a":1},"msg":"m",` + date + `}`, `"id" is not a string`},
		{"empty id", `{"id":"","msg":"m",` + date + `}`, `"id" is empty`},
		{"id of 65 characters", `{"id":"` + strings.Repeat("a", 65) + `","msg":"m",` + date + `}`, "over the 64-character limit"},
		{"missing msg", `{"id":"a",` + date + `}`, `"msg" is missing`},
		{"numeric msg", `{"id":"a","msg":1,` + date + `}`, `"msg" is not a string`},
		{"boolean msg", `{"id":"a","msg":true,` + date + `}`, `"msg" is not a string`},
		{"missing date", `{"id":"a","msg":"m"}`, `"date" is missing`},
		{"numeric date", `{"id":"a","msg":"m","date":1763802902}`, `"date" is not a string`},
		{"date in words", `{"id":"a","msg":"m","date":"yesterday"}`, "not an RFC 3339"},
		{"date without zone", `{"id":"a","msg":"m","date":"2026-11-22T09:15:02"}`, "not an RFC 3339"},
		{"date only", `{"id":"a","msg":"m","date":"2026-11-22"}`, "not an RFC 3339"},
		{"impossible date", `{"id":"a","msg":"m","date":"2026-02-30T09:15:02Z"}`, "not an RFC 3339"},
		{"numeric request_id", `{"id":"a","msg":"m",` + date + `,"request_id":7}`, `"request_id" is not a string`},
		{"body over 64 KiB", `{"id":"a","msg":"` + strings.Repeat("x", 64<<10) + `",` + date + `}`, "over the 65536-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decodeMessage([]byte(tt.body))
			if err == nil {
				t.Fatalf("decodeMessage accepted it: %+v", m)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long; untrusted input must be cut short", len(err.Error()))
			}
		})
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(mustReadGolden(f))
	for _, seed := range []string{
		`{"id":"a","msg":"m","date":"2026-11-22T09:15:02Z"}`,
		`{"id":"a","msg":"m","date":"2026-11-22T09:15:02Z","request_id":null,"x":[1,{"y":2}]}`,
		`{"id":"","msg":"m","date":"2026-11-22T09:15:02Z"}`,
		`{"id":"a","msg":1,"date":"2026-11-22T09:15:02Z"}`,
		`{"id":"a","msg":"m","date":"2026-13-22T09:15:02Z"}`,
		`{"id":"\ud800","msg":"\u0000","date":"2026-11-22T09:15:02.999999999-23:59"}`,
		`null`, `[]`, `{}`, `"x"`, ``, `{"id":`, "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := decodeMessage(body) // must not panic, whatever the body
		if err != nil {
			return
		}
		if len(body) > maxBodyBytes {
			t.Errorf("accepted a body of %d bytes", len(body))
		}
		if m.ID == "" || utf8.RuneCountInString(m.ID) > maxIDChars {
			t.Errorf("accepted id %q", m.ID)
		}
		if _, err := time.Parse(time.RFC3339Nano, m.Date); err != nil {
			t.Errorf("accepted date %q: %v", m.Date, err)
		}
		// What was accepted survives a round trip through the format.
		again, err := json.Marshal(map[string]string{"id": m.ID, "msg": m.Msg, "date": m.Date, "request_id": m.RequestID})
		if err != nil {
			t.Fatal(err)
		}
		if len(again) > maxBodyBytes {
			return // escaping made it longer than the limit
		}
		if m2, err := decodeMessage(again); err != nil || m2 != m {
			t.Errorf("round trip: %+v, %v; want %+v", m2, err, m)
		}
	})
}
