package badinput

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const jsonType = "application/json"

// badCase is one wrong request and the answer it must get.
type badCase struct {
	name   string
	method string // default POST
	path   string // default /ping
	header map[string]string
	body   string
	// raw, when set, is written to the gateway as is instead (see rawRequest).
	raw    []byte
	status int
	detail string // a fragment of the problem's detail
}

// badCases are the mistakes of the issue, in its order. Each must be
// refused with a problem and leave /pong as it was.
func badCases() []badCase {
	msgOf := func(s string) string { return `{"msg":"` + s + `"}` }
	return []badCase{
		// The body of POST /ping.
		{name: "malformed JSON", body: `{"msg" "hello"}`, status: 400, detail: "The body is not valid JSON: invalid character '\"' after object key (at byte 8)"},
		{name: "unfinished JSON", body: `{"msg":"hello"`, status: 400, detail: "ends before its JSON value is complete"},
		{name: "empty body", body: ``, status: 400, detail: "The body is empty; send a JSON object such as {\"msg\":\"hello\"}"},
		{name: "trailing data", body: `{"msg":"hello"} {"msg":"again"}`, status: 400, detail: "more data after the JSON object, at byte 17"},
		{name: "array", body: `["hello"]`, status: 400, detail: "The body is an array; it must be a JSON object"},
		{name: "string", body: `"hello"`, status: 400, detail: "The body is a string; it must be a JSON object"},
		{name: "null body", body: `null`, status: 400, detail: "The body is null; it must be a JSON object"},
		{name: "msg missing", body: `{}`, status: 400, detail: "msg is required"},
		{name: "msg null", body: `{"msg":null}`, status: 400, detail: "msg is required"},
		{name: "msg number", body: `{"msg":42}`, status: 400, detail: "msg must be a string, not a number"},
		{name: "msg array", body: `{"msg":["hello"]}`, status: 400, detail: "msg must be a string, not an array"},
		{name: "msg empty", body: msgOf(""), status: 400, detail: "msg is empty or only white space"},
		{name: "msg white space", body: msgOf(` \t\n\r `), status: 400, detail: "msg is empty or only white space"},
		{name: "msg of 1025 characters", body: msgOf(strings.Repeat("x", 1025)), status: 400, detail: "msg is 1025 characters long; the limit is 1024"},
		{name: "msg of 1025 two-byte characters", body: msgOf(strings.Repeat("é", 1025)), status: 400, detail: "msg is 1025 characters long; the limit is 1024"},
		{name: "msg of 1025 four-byte characters", body: msgOf(strings.Repeat("👋", 1025)), status: 400, detail: "msg is 1025 characters long; the limit is 1024"},
		{name: "invalid UTF-8", body: "{\"msg\":\"caf\xe9\"}", status: 400, detail: "not valid UTF-8 (the first invalid byte is at offset 11)"},
		{name: "lone surrogate escape", body: `{"msg":"\ud800"}`, status: 400, detail: `msg contains the escape \ud800, half of a UTF-16 surrogate pair`},
		{name: "NUL byte", body: "{\"msg\":\"a\x00b\"}", status: 400, detail: "The body is not valid JSON: invalid character '\\x00' in string literal"},
		{name: "escaped NUL", body: msgOf(`a\u0000b`), status: 400, detail: "msg contains the control character U+0000 at character 2"},
		{name: "unknown field", body: `{"msg":"hello","from":"me"}`, status: 400, detail: `The field "from" is not known; the only field is "msg"`},
		{name: "field in other case", body: `{"MSG":"hello"}`, status: 400, detail: `The field "MSG" is not known`},
		{name: "duplicate key", body: `{"msg":"hello","msg":"again"}`, status: 400, detail: `The field "msg" appears more than once`},
		{name: "body of 16 KiB + 1", body: msgOf(strings.Repeat("x", 16<<10+1-len(msgOf("")))), status: 413, detail: "larger than 16 KiB"},
		{name: "chunked body over the limit", raw: rawRequest("POST /ping HTTP/1.1",
			[]string{"Content-Type: application/json", "Transfer-Encoding: chunked"},
			chunked(msgOf(strings.Repeat("x", 20<<10)), 4096)), status: 413, detail: "larger than 16 KiB"},
		{name: "wrong content type", header: map[string]string{"Content-Type": "text/plain"}, body: msgOf("hello"), status: 415, detail: "Content-Type: application/json"},
		{name: "form content type", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "msg=hello", status: 415, detail: "Content-Type: application/json"},
		{name: "no content type", header: map[string]string{}, body: msgOf("hello"), status: 415, detail: "Content-Type: application/json"},

		// Methods and routes.
		{name: "GET /ping", method: "GET", status: 405, detail: "GET is not allowed on /ping; use POST"},
		{name: "PUT /ping", method: "PUT", body: msgOf("hello"), status: 405, detail: "PUT is not allowed on /ping; use POST"},
		{name: "DELETE /ping", method: "DELETE", status: 405, detail: "DELETE is not allowed on /ping; use POST"},
		{name: "POST /pong", path: "/pong", body: msgOf("hello"), status: 405, detail: "/pong does not accept POST; use one of: GET, HEAD"},
		{name: "unknown route", method: "GET", path: "/pings", status: 404, detail: "There is no route for GET /pings here. The gateway serves POST /ping"},

		// GET /pong's parameters.
		{name: "limit 0", method: "GET", path: "/pong?limit=0", status: 400, detail: `limit must be a whole number from 1 to 1000 (default 100), got "0"`},
		{name: "limit -1", method: "GET", path: "/pong?limit=-1", status: 400, detail: `limit must be a whole number from 1 to 1000 (default 100), got "-1"`},
		{name: "limit 1001", method: "GET", path: "/pong?limit=1001", status: 400, detail: `got "1001"`},
		{name: "limit text", method: "GET", path: "/pong?limit=ten", status: 400, detail: `got "ten"`},
		{name: "limit of 20 digits", method: "GET", path: "/pong?limit=12345678901234567890", status: 400, detail: `got "12345678901234567890"`},
		{name: "limit empty", method: "GET", path: "/pong?limit=", status: 400, detail: `got ""`},
		{name: "garbage after", method: "GET", path: "/pong?after=garbage!", status: 400, detail: `after must be the "next" value of a previous GET /pong response`},
		{name: "after with padding", method: "GET", path: "/pong?after=MTIz%3D", status: 400, detail: `after must be the "next" value`},

		// GET /pong/{id}. nginx decodes and normalises a path to choose where
		// to send it, the service gets it as sent: the gateway refuses paths
		// the two could read differently.
		{name: "encoded slash in id", method: "GET", path: "/pong/a%2Fb", status: 400, detail: "The path has an encoded slash (%2F)"},
		{name: "dot segments", raw: rawRequest("GET /pong/../ping HTTP/1.1", nil, ""), status: 400, detail: "a dot segment (/./ or /../)"},
		{name: "encoded dot segments", raw: rawRequest("GET /pong/%2e%2E/metrics HTTP/1.1", nil, ""), status: 400, detail: "a dot segment (/./ or /../)"},
		{name: "single dot segment", raw: rawRequest("GET /pong/./x HTTP/1.1", nil, ""), status: 400, detail: "a dot segment (/./ or /../)"},
		{name: "double slash", raw: rawRequest("GET /pong//x HTTP/1.1", nil, ""), status: 400, detail: "or a double slash; send the plain path"},
		// ...but only the path: these reach service02.
		{name: "dot segment in the query", method: "GET", path: "/pong?limit=/../", status: 400, detail: `limit must be a whole number from 1 to 1000 (default 100), got "/../"`},
		{name: "absolute-form request", raw: rawRequest("GET http://lab/pong?limit=x HTTP/1.1", nil, ""), status: 400, detail: `got "x"`},
		{name: "dot segments above the root", raw: rawRequest("GET /pong/../../etc/passwd HTTP/1.1", nil, ""), status: 400, detail: "could not parse the HTTP request"},
		{name: "id of 10 000 characters", method: "GET", path: "/pong/" + strings.Repeat("a", 10000), status: 414, detail: "The request line is longer than the gateway accepts (8 KiB)"},
		{name: "id of 1000 characters", method: "GET", path: "/pong/" + strings.Repeat("a", 1000), status: 404, detail: `No message with id "` + strings.Repeat("a", 64) + `..." is stored`},
		{name: "id with dots", method: "GET", path: "/pong/..a.", status: 404, detail: `No message with id "..a." is stored`},
		{name: "invalid UTF-8 in id", raw: rawRequest("GET /pong/caf\xe9 HTTP/1.1", nil, ""), status: 404, detail: "No message with id"},

		// The request itself.
		{name: "malformed request line", raw: []byte("GET /pong HTTP/1.1 extra\r\nHost: lab\r\n\r\n"), status: 400, detail: "could not parse the HTTP request; check its request line and headers"},
		{name: "relative path", raw: []byte("GET pong HTTP/1.1\r\nHost: lab\r\n\r\n"), status: 400, detail: "could not parse the HTTP request"},
		{name: "bad method", raw: []byte("G(T /pong HTTP/1.1\r\nHost: lab\r\n\r\n"), status: 400, detail: "could not parse the HTTP request"},
		{name: "TLS to the plain port", raw: []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), status: 400, detail: "could not parse the HTTP request"},
		{name: "no Host header", raw: []byte("GET /pong HTTP/1.1\r\n\r\n"), status: 400, detail: "could not parse the HTTP request"},
		{name: "HTTP/2.0 request line", raw: []byte("GET /pong HTTP/2.0\r\nHost: lab\r\n\r\n"), status: 505, detail: "The gateway speaks HTTP/1.0 and HTTP/1.1"},
		{name: "TRACE", raw: rawRequest("TRACE /ping HTTP/1.1", nil, ""), status: 405, detail: "The gateway does not accept TRACE requests"},
		{name: "unknown transfer coding", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Transfer-Encoding: gzip"}, "abc"), status: 501, detail: "Content-Length or Transfer-Encoding: chunked only"},
		{name: "Content-Length and chunked", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Transfer-Encoding: chunked", "Content-Length: 20"}, chunked(msgOf("hello"), 8)), status: 400, detail: "could not parse the HTTP request"},
		{name: "bad chunk size", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Transfer-Encoding: chunked"}, "zz\r\n"+msgOf("hello")+"\r\n0\r\n\r\n"), status: 400, detail: "could not parse the HTTP request"},
		{name: "negative Content-Length", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Content-Length: -1"}, ""), status: 400, detail: "could not parse the HTTP request"},
		{name: "two Host headers", raw: rawRequest("GET /pong HTTP/1.1", []string{"Host: other"}, ""), status: 400, detail: "could not parse the HTTP request"},
		{name: "NUL in the request line", raw: rawRequest("GET /pong/a\x00b HTTP/1.1", nil, ""), status: 400, detail: "could not parse the HTTP request"},
		{name: "NUL in a header", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "X-Note: a\x00b"}, msgOf("hello")), status: 400, detail: "could not parse the HTTP request"},
		{name: "very long header", header: map[string]string{"Content-Type": jsonType, "X-Note": strings.Repeat("n", 10000)}, body: msgOf("hello"), status: 431, detail: "larger than the gateway accepts (8 KiB for one header line"},
		{name: "Idempotency-Key of 256 characters", header: map[string]string{"Content-Type": jsonType, "Idempotency-Key": strings.Repeat("k", 256)}, body: msgOf("hello"), status: 400, detail: "The Idempotency-Key is 256 characters long; it must have 1 to 255 visible ASCII characters"},
		{name: "empty Idempotency-Key", header: map[string]string{"Content-Type": jsonType, "Idempotency-Key": ""}, body: msgOf("hello"), status: 400, detail: "The Idempotency-Key is 0 characters long"},
		{name: "Idempotency-Key with a space", header: map[string]string{"Content-Type": jsonType, "Idempotency-Key": "my key"}, body: msgOf("hello"), status: 400, detail: "The Idempotency-Key has the byte 0x20 at position 3"},
		{name: "non-ASCII Idempotency-Key", header: map[string]string{"Content-Type": jsonType, "Idempotency-Key": "clé"}, body: msgOf("hello"), status: 400, detail: "The Idempotency-Key has the byte 0xC3 at position 3"},
		{name: "two Idempotency-Keys", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Idempotency-Key: a", "Idempotency-Key: b"}, msgOf("hello")), status: 400, detail: "The Idempotency-Key header appears 2 times; send it once"},
		{name: "headers over 32 KiB in all", raw: rawRequest("POST /ping HTTP/1.1", manyHeaders(100, 400), msgOf("hello")), status: 431, detail: "32 KiB for all of them"},
		{name: "two content lengths", raw: rawRequest("POST /ping HTTP/1.1", []string{"Content-Type: application/json", "Content-Length: 15", "Content-Length: 16"}, msgOf("hello")), status: 400, detail: "could not parse the HTTP request"},
	}
}

// manyHeaders returns n headers with values of size bytes.
func manyHeaders(n, size int) []string {
	h := []string{"Content-Type: application/json"}
	for i := range n {
		h = append(h, fmt.Sprintf("X-Note-%d: %s", i, strings.Repeat("n", size)))
	}
	return h
}

// chunked encodes body in chunks of size bytes, with the last chunk.
func chunked(body string, size int) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		b.WriteString(strconv.FormatInt(int64(n), 16) + "\r\n" + body[:n] + "\r\n")
		body = body[n:]
	}
	return b.String() + "0\r\n\r\n"
}

// TestBadInput sends every bad case through the gateway. Each must be
// refused with its problem, and none may store anything: /pong is compared
// after each case, and at the end a valid ping, queued behind anything a
// bad case could have published, must be the only message added.
func TestBadInput(t *testing.T) {
	l := lab.Get(t)
	before := storedIDs(t, l)
	for _, tc := range badCases() {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var body []byte
			if tc.raw != nil {
				resp, body = sendRaw(t, l, tc.raw)
			} else {
				method, path, header := tc.method, tc.path, tc.header
				if method == "" {
					method = http.MethodPost
				}
				if path == "" {
					path = "/ping"
				}
				if header == nil {
					header = map[string]string{"Content-Type": jsonType}
				}
				resp, body = send(t, method, l.GatewayURL()+path, header, []byte(tc.body))
			}
			mustProblem(t, resp, body, tc.status, tc.detail)
			// The services' 405s say which methods are allowed.
			if tc.status == http.StatusMethodNotAllowed && tc.raw == nil && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			if now := storedIDs(t, l); len(now) != len(before) {
				t.Errorf("/pong holds %d messages, %d before the case", len(now), len(before))
			}
		})
	}

	sentinel := mustPing(t, l, "sentinel after the bad input")
	waitStored(t, l, sentinel)
	after := storedIDs(t, l)
	if want := append(slices.Clone(before), sentinel); !slices.Equal(after, want) {
		t.Errorf("/pong after the bad input = %q, want %q (what was there plus the sentinel)", after, want)
	}
}

// TestLimitsAccepted checks the edge just inside the limits: a msg of 1024
// characters, however many bytes each, is accepted and stored as sent.
func TestLimitsAccepted(t *testing.T) {
	l := lab.Get(t)
	for _, msg := range []string{
		strings.Repeat("x", 1024),
		strings.Repeat("é", 1024),
		strings.Repeat("👋", 1024),
		" leading and trailing white space is kept\t\r\n",
	} {
		id := mustPing(t, l, msg)
		if got := waitStored(t, l, id); got != msg {
			t.Errorf("stored msg %.40q..., want %.40q...", got, msg)
		}
	}

	// A body of exactly 16 KiB passes both the gateway and service01: their
	// limits are the same.
	body := `{"msg":"sixteen KiB"}`
	body += strings.Repeat(" ", 16<<10-len(body))
	resp, data := send(t, http.MethodPost, l.GatewayURL()+"/ping", map[string]string{"Content-Type": jsonType}, []byte(body))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("a body of 16 KiB: %d %s", resp.StatusCode, data)
	}
	// Wait until it is stored, so that later tests see a settled /pong.
	var m struct{ ID string }
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if got := waitStored(t, l, m.ID); got != "sixteen KiB" {
		t.Errorf("stored msg %q, want %q", got, "sixteen KiB")
	}
}
