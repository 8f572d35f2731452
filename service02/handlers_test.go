package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeReadiness is a readiness whose answer the test sets.
type fakeReadiness struct{ err error }

func (f *fakeReadiness) Ready() error { return f.err }

// syncBuffer is a bytes.Buffer safe for concurrent use (a logger's output).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is the HTTP API over a store, with a fake readiness.
type testServer struct {
	handler http.Handler
	store   *Store
	ready   *fakeReadiness
	logs    *syncBuffer
}

func newTestServer(tb testing.TB, capacity int) *testServer {
	tb.Helper()
	ts := &testServer{store: NewStore(capacity), ready: &fakeReadiness{}, logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(ts.logs, nil))
	ts.handler = NewServer(logger, ts.store, ts.ready, newMetrics(ts.store))
	return ts
}

// do sends a request to the server and returns the recorded response.
func (ts *testServer) do(method, target string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	ts.handler.ServeHTTP(rec, req)
	return rec
}

// mustDecode decodes a JSON response body into v.
func mustDecode(tb testing.TB, rec *httptest.ResponseRecorder, v any) {
	tb.Helper()
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		tb.Fatalf("decode the response body: %v", err)
	}
}

// checkProblem checks that rec is an RFC 9457 problem with the given status
// and exactly the members the API promises, and returns its detail.
func checkProblem(tb testing.TB, rec *httptest.ResponseRecorder, status int) string {
	tb.Helper()
	if rec.Code != status {
		tb.Errorf("status %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var members map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &members); err != nil {
		tb.Fatalf("problem body is not a JSON object: %v: %s", err, rec.Body)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range members {
			if !yield(k) {
				return
			}
		}
	})
	if want := []string{"detail", "request_id", "status", "title", "type"}; !slices.Equal(keys, want) {
		tb.Errorf("problem members %v, want %v", keys, want)
	}
	if members["type"] != "about:blank" || members["title"] != http.StatusText(status) || members["status"] != float64(status) {
		tb.Errorf("problem = %v, want type about:blank, title %q, status %d", members, http.StatusText(status), status)
	}
	if id := rec.Header().Get("X-Request-ID"); id == "" || members["request_id"] != id {
		tb.Errorf("problem request_id %v, X-Request-ID header %q: want them equal and set", members["request_id"], id)
	}
	detail, _ := members["detail"].(string)
	if detail == "" {
		tb.Error("problem has no detail")
	}
	return detail
}

var receivedAtPattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestPongPagination(t *testing.T) {
	ts := newTestServer(t, 1000)
	mustAdd(t, ts.store, 1, 250)

	// Follow next from the start, 100 at a time by default.
	var ids []string
	var pages []int
	target := "/pong"
	for range 10 {
		rec := ts.do("GET", target, nil)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %s: %s", target, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		var page struct {
			Messages []pongMessage `json:"messages"`
			Next     *string       `json:"next"`
		}
		mustDecode(t, rec, &page)
		pages = append(pages, len(page.Messages))
		for _, m := range page.Messages {
			ids = append(ids, m.ID)
			if m.Msg != "hello "+m.ID || m.Date != "2026-11-22T09:15:02.123456Z" || m.RequestID != "req-"+m.ID || !receivedAtPattern.MatchString(m.ReceivedAt) {
				t.Fatalf("message %+v does not match what was stored", m)
			}
		}
		if page.Next == nil {
			break
		}
		target = "/pong?after=" + url.QueryEscape(*page.Next)
	}
	if !slices.Equal(pages, []int{100, 100, 50}) {
		t.Errorf("page sizes %v, want [100 100 50]", pages)
	}
	if !equalIDs(ids, idRange(1, 250)) {
		t.Errorf("pages hold %d ids, not m1..m250 in order", len(ids))
	}

	// limit, and unknown parameters are ignored.
	var page pongPage
	rec := ts.do("GET", "/pong?limit=1000&color=blue", nil)
	mustDecode(t, rec, &page)
	if len(page.Messages) != 250 || page.Next != nil {
		t.Errorf("limit=1000: %d messages, next %v; want 250 and null", len(page.Messages), page.Next)
	}
	rec = ts.do("GET", "/pong?limit=1", nil)
	mustDecode(t, rec, &page)
	if len(page.Messages) != 1 || page.Messages[0].ID != "m1" || page.Next == nil {
		t.Errorf("limit=1: %+v, want m1 and a next cursor", page)
	}
}

func TestPongEmptyStore(t *testing.T) {
	ts := newTestServer(t, 10)
	rec := ts.do("GET", "/pong", nil)
	if rec.Code != http.StatusOK || rec.Body.String() != `{"messages":[],"next":null}`+"\n" {
		t.Errorf("GET /pong on an empty store: %d %q", rec.Code, rec.Body)
	}
}

func TestPongCursorFromAnotherStore(t *testing.T) {
	ts := newTestServer(t, 10)
	mustAdd(t, ts.store, 1, 3)
	// A cursor issued before a restart, by a store that had reached seq 2.
	stale := encodeCursor(ts.store.Epoch()+1, 2)
	var page pongPage
	mustDecode(t, ts.do("GET", "/pong?after="+stale, nil), &page)
	if len(page.Messages) != 3 || page.Messages[0].ID != "m1" {
		t.Errorf("a cursor from another store should start from the oldest message; got %+v", page)
	}
}

func TestPongHead(t *testing.T) {
	ts := newTestServer(t, 10)
	mustAdd(t, ts.store, 1, 1)
	// A real server: it is net/http that leaves out the body of a HEAD
	// response (a ResponseRecorder keeps it).
	srv := httptest.NewServer(ts.handler)
	defer srv.Close()
	resp, err := http.Head(srv.URL + "/pong")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength <= 0 {
		t.Errorf("HEAD /pong: %d, Content-Length %d, %d body bytes; want 200, the GET length, no body",
			resp.StatusCode, resp.ContentLength, len(body))
	}
}

func TestPongBadQuery(t *testing.T) {
	ts := newTestServer(t, 10)
	mustAdd(t, ts.store, 1, 3)
	for _, query := range []string{
		"limit=0", "limit=-1", "limit=1001", "limit=abc", "limit=", "limit=1.5", "limit=%20100",
		"limit=" + strings.Repeat("9", 20),
	} {
		detail := checkProblem(t, ts.do("GET", "/pong?"+query, nil), http.StatusBadRequest)
		if !strings.Contains(detail, "from 1 to 1000") {
			t.Errorf("%s: detail %q does not give the allowed values", query, detail)
		}
	}
	for _, query := range []string{
		"after=", "after=garbage!", "after=MTIz", "after=" + encodeCursor(ts.store.Epoch(), 1) + "x",
		"after=" + strings.Repeat("A", 10000),
	} {
		detail := checkProblem(t, ts.do("GET", "/pong?"+query, nil), http.StatusBadRequest)
		if !strings.Contains(detail, `"next" value of a previous GET /pong`) {
			t.Errorf("%s: detail %q does not say what after must be", truncate(query, 40), detail)
		}
	}
}

func TestPongByID(t *testing.T) {
	ts := newTestServer(t, 10)
	mustAdd(t, ts.store, 1, 2)

	rec := ts.do("GET", "/pong/m2", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /pong/m2: %d %s", rec.Code, rec.Body)
	}
	var m pongMessage
	mustDecode(t, rec, &m)
	if m.ID != "m2" || m.Msg != "hello m2" || m.RequestID != "req-m2" || !receivedAtPattern.MatchString(m.ReceivedAt) {
		t.Errorf("GET /pong/m2 = %+v", m)
	}

	detail := checkProblem(t, ts.do("GET", "/pong/nope", nil), http.StatusNotFound)
	for _, want := range []string{`"nope"`, "POST /ping", "newest 10 messages", "a restart of service02 empties it unless it replays"} {
		if !strings.Contains(detail, want) {
			t.Errorf("404 detail %q does not contain %q", detail, want)
		}
	}
	// Longer than any stored id can be: 404 as well, the id cut short.
	detail = checkProblem(t, ts.do("GET", "/pong/"+strings.Repeat("x", 500), nil), http.StatusNotFound)
	if len(detail) > 300 {
		t.Errorf("404 detail for a long id is %d bytes long", len(detail))
	}
}

func TestMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, 10)
	for _, req := range []struct{ method, path string }{
		{"POST", "/pong"}, {"DELETE", "/pong"}, {"PUT", "/pong/abc"}, {"POST", "/healthz"},
		{"POST", "/readyz"}, {"DELETE", "/metrics"},
	} {
		rec := ts.do(req.method, req.path, nil)
		checkProblem(t, rec, http.StatusMethodNotAllowed)
		if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s %s: Allow %q, want %q", req.method, req.path, allow, "GET, HEAD")
		}
	}
}

func TestNotFound(t *testing.T) {
	ts := newTestServer(t, 10)
	for _, path := range []string{"/", "/ping", "/pong/", "/pong/a/b", "/pongs"} {
		detail := checkProblem(t, ts.do("GET", path, nil), http.StatusNotFound)
		if !strings.Contains(detail, "GET /pong") {
			t.Errorf("GET %s: detail %q does not list the routes", path, detail)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	ts := newTestServer(t, 10)
	if rec := ts.do("GET", "/healthz", nil); rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ok"}`+"\n" {
		t.Errorf("GET /healthz: %d %s", rec.Code, rec.Body)
	}
	if rec := ts.do("GET", "/readyz", nil); rec.Code != http.StatusOK || rec.Body.String() != `{"status":"ready"}`+"\n" {
		t.Errorf("GET /readyz when ready: %d %s", rec.Code, rec.Body)
	}
	ts.ready.err = errors.New("not connected to RabbitMQ at localhost:5672: connection refused; retrying")
	if detail := checkProblem(t, ts.do("GET", "/readyz", nil), http.StatusServiceUnavailable); detail != ts.ready.err.Error() {
		t.Errorf("GET /readyz when not ready: detail %q, want %q", detail, ts.ready.err)
	}
	// Liveness does not depend on the broker.
	if rec := ts.do("GET", "/healthz", nil); rec.Code != http.StatusOK {
		t.Errorf("GET /healthz when not ready: %d", rec.Code)
	}
}

func TestRequestID(t *testing.T) {
	ts := newTestServer(t, 10)
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name, sent string
		kept       bool
	}{
		{"plain id kept", "abc.DEF_123-x", true},
		{"64 characters kept", strings.Repeat("a", 64), true},
		{"missing", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
		{"non-ASCII", "é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := http.Header{}
			if tt.sent != "" {
				header.Set("X-Request-ID", tt.sent)
			}
			rec := ts.do("GET", "/pong/unknown", header)
			got := rec.Header().Get("X-Request-ID")
			if tt.kept && got != tt.sent {
				t.Errorf("X-Request-ID %q, want %q kept", got, tt.sent)
			}
			if !tt.kept && !hex32.MatchString(got) {
				t.Errorf("X-Request-ID %q, want a new 32-hex-character id", got)
			}
			checkProblem(t, rec, http.StatusNotFound) // the problem carries the same id
			if !strings.Contains(ts.logs.String(), `"request_id":"`+got+`"`) {
				t.Errorf("no log line carries request_id %q", got)
			}
		})
	}
}

func TestRequestLogLine(t *testing.T) {
	ts := newTestServer(t, 10)
	ts.do("GET", "/pong?limit=5", http.Header{"X-Request-Id": {"log-test"}})
	var line map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(ts.logs.String())), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", ts.logs.String(), err)
	}
	for key, want := range map[string]any{
		"method": "GET", "path": "/pong", "route": "GET /pong", "status": float64(200), "request_id": "log-test",
	} {
		if line[key] != want {
			t.Errorf("log %s = %v, want %v", key, line[key], want)
		}
	}
	if _, ok := line["duration_ms"].(float64); !ok {
		t.Errorf("log duration_ms = %v, want a number", line["duration_ms"])
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ts := newTestServer(t, 10)
	mustAdd(t, ts.store, 1, 3)
	ts.do("GET", "/pong", nil)
	ts.do("GET", "/pong", nil)
	ts.do("GET", "/no/such/path", nil)
	ts.do("POST", "/pong", nil)

	rec := ts.do("GET", "/metrics", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`http_requests_total{code="200",route="GET /pong"} 2`,
		`http_requests_total{code="404",route="other"} 1`,
		`http_requests_total{code="405",route="/pong"} 1`,
		`http_request_duration_seconds_count{route="GET /pong"} 2`,
		"service02_store_messages 3",
		"service02_store_evicted_total 0",
		"service02_messages_consumed_total 0",
		"service02_messages_duplicate_total 0",
		"service02_messages_dead_lettered_total 0",
		"service02_connected 0",
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics has no line %q", want)
		}
	}
}

func TestResponsesSetContentLength(t *testing.T) {
	ts := newTestServer(t, 10)
	rec := ts.do("GET", "/pong", nil)
	if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Content-Length %q for a %d-byte body", got, rec.Body.Len())
	}
}
