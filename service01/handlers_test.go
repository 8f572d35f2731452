package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePublisher records what it is asked to publish and answers with err.
type fakePublisher struct {
	mu        sync.Mutex
	published []message
	err       error // what Publish returns
	ready     error // what Ready returns
}

func (f *fakePublisher) Publish(ctx context.Context, m message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.published = append(f.published, m)
	return nil
}

func (f *fakePublisher) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakePublisher) setReady(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready = err
}

func (f *fakePublisher) messages() []message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]message(nil), f.published...)
}

// serve sends req to a server backed by pub and returns the recorded answer.
func serve(t *testing.T, pub publisher, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := httptest.NewRecorder()
	newServer(logger, httpConfig, newMetrics(), pub, newIdempotencyKeys(time.Hour, 100)).ServeHTTP(rec, req)
	return rec
}

func newPing(body, contentType string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/ping", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// mustProblem checks that rec is a problem+json answer with exactly the
// lab's members, status code and request id, and returns it.
func mustProblem(t *testing.T, rec *httptest.ResponseRecorder, status int) problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	var members map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &members); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
	}
	want := []string{"type", "title", "status", "detail", "request_id"}
	if len(members) != len(want) {
		t.Errorf("problem members = %v, want exactly %v", members, want)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p.Type != "about:blank" || p.Title != http.StatusText(status) || p.Status != status || p.Detail == "" {
		t.Errorf("problem = %+v, want type about:blank, title %q, status %d and a detail", p, http.StatusText(status), status)
	}
	if id := rec.Header().Get("X-Request-ID"); p.RequestID == "" || p.RequestID != id {
		t.Errorf("problem request_id = %q, X-Request-ID = %q, want the same non-empty id", p.RequestID, id)
	}
	return p
}

func TestPingAccepted(t *testing.T) {
	pub := &fakePublisher{}
	req := newPing(`{"msg":"hello"}`, "application/json")
	req.Header.Set("X-Request-ID", "tutorial-1")
	before := time.Now().UTC()
	rec := serve(t, pub, req)

	if rec.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got message
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode body: %v", err)
	}
	published := pub.messages()
	if len(published) != 1 {
		t.Fatalf("published %d messages, want 1", len(published))
	}
	if got != published[0] {
		t.Errorf("body = %+v, want the published message %+v", got, published[0])
	}
	if got.Msg != "hello" || got.RequestID != "tutorial-1" {
		t.Errorf("msg, request_id = %q, %q; want hello, tutorial-1", got.Msg, got.RequestID)
	}
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if !uuidV4.MatchString(got.ID) {
		t.Errorf("id = %q, want a UUID v4", got.ID)
	}
	if loc := rec.Header().Get("Location"); loc != "/pong/"+got.ID {
		t.Errorf("Location = %q, want /pong/%s", loc, got.ID)
	}
	date, err := time.Parse(dateLayout, got.Date)
	if err != nil {
		t.Fatalf("date %q: %v", got.Date, err)
	}
	if date.Before(before.Truncate(time.Microsecond)) || date.After(time.Now()) {
		t.Errorf("date = %s, want the time of the request (after %s)", date, before)
	}
}

func TestPingRejected(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		detail      string // a part of the problem's detail
	}{
		{"no content type", `{"msg":"hello"}`, "", http.StatusUnsupportedMediaType,
			`Send the body as JSON with Content-Type: application/json, e.g. curl --json '{"msg":"hello"}' http://localhost:8000/ping`},
		{"form", `msg=hello`, "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType, "Content-Type: application/json"},
		{"text", `{"msg":"hello"}`, "text/plain", http.StatusUnsupportedMediaType, "Content-Type: application/json"},
		{"malformed content type", `{"msg":"hello"}`, "application/json; charset", http.StatusUnsupportedMediaType, "Content-Type: application/json"},
		{"too large", `{"msg":"` + strings.Repeat("a", maxBodyBytes) + `"}`, "application/json", http.StatusRequestEntityTooLarge, "larger than 16 KiB"},
		{"invalid UTF-8", "{\"msg\":\"\xff\"}", "application/json", http.StatusBadRequest, "not valid UTF-8"},
		{"empty", ``, "application/json", http.StatusBadRequest, "The body is empty"},
		{"syntax", `{"msg":}`, "application/json", http.StatusBadRequest, "not valid JSON"},
		{"trailing data", `{"msg":"a"}{}`, "application/json", http.StatusBadRequest, "more data after the JSON object"},
		{"not an object", `["a"]`, "application/json", http.StatusBadRequest, "must be a JSON object"},
		{"duplicate key", `{"msg":"a","msg":"b"}`, "application/json", http.StatusBadRequest, `"msg" appears more than once`},
		{"unknown field", `{"msg":"a","to":"b"}`, "application/json", http.StatusBadRequest, `The field "to" is not known`},
		{"missing msg", `{}`, "application/json", http.StatusBadRequest, "msg is required"},
		{"null msg", `{"msg":null}`, "application/json", http.StatusBadRequest, "msg is required"},
		{"number msg", `{"msg":1}`, "application/json", http.StatusBadRequest, "msg must be a string"},
		{"blank msg", `{"msg":"  "}`, "application/json", http.StatusBadRequest, "empty or only white space"},
		{"long msg", `{"msg":"` + strings.Repeat("a", 1025) + `"}`, "application/json", http.StatusBadRequest, "1025 characters long; the limit is 1024"},
		{"control character", `{"msg":"a\u0000"}`, "application/json", http.StatusBadRequest, "control character U+0000 at character 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			rec := serve(t, pub, newPing(tt.body, tt.contentType))
			p := mustProblem(t, rec, tt.status)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.detail)
			}
			if n := len(pub.messages()); n != 0 {
				t.Errorf("published %d messages, want none", n)
			}
		})
	}
}

func TestPingBodyLimit(t *testing.T) {
	valid := `{"msg":"hello"}`
	for _, tt := range []struct {
		size   int
		status int
	}{
		{maxBodyBytes, http.StatusAccepted},
		{maxBodyBytes + 1, http.StatusRequestEntityTooLarge},
	} {
		body := valid + strings.Repeat(" ", tt.size-len(valid)) // white space after the object is fine
		rec := serve(t, &fakePublisher{}, newPing(body, "application/json"))
		if rec.Code != tt.status {
			t.Errorf("%d-byte body: status = %d, want %d; body: %s", tt.size, rec.Code, tt.status, rec.Body)
		}
	}
}

func TestPingContentTypeParameters(t *testing.T) {
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;Charset=UTF-8"} {
		rec := serve(t, &fakePublisher{}, newPing(`{"msg":"hello"}`, ct))
		if rec.Code != http.StatusAccepted {
			t.Errorf("Content-Type %q: status = %d, want 202; body: %s", ct, rec.Code, rec.Body)
		}
	}
}

// httpConfig is the configuration the handlers' words quote.
var httpConfig = config{ConfirmTimeout: 5 * time.Second, RabbitMQConfig: RabbitMQConfig{Exchange: "pings", RoutingKey: "ping.created", RabbitMQHost: "localhost", RabbitMQPort: 5672}}

// TestPublishFailure checks the words for each way a publish fails: what
// became of the message, and what to do.
func TestPublishFailure(t *testing.T) {
	tests := []struct {
		err    error
		result string
		detail string
	}{
		{&publishError{Result: resultUnavailable, Err: fmt.Errorf("%w: %w", errNotConnected, errors.New("dial tcp: refused"))}, resultUnavailable, "not connected to RabbitMQ at localhost:5672, so the message was not sent"},
		{&publishError{Result: resultBlocked, Err: &blockedError{Reason: "low on memory"}}, resultBlocked, "memory or disk alarm (low on memory)"},
		{&publishError{Result: resultUnavailable, Err: errors.New("channel.open: closed")}, resultUnavailable, "so the message was not sent"},
		{&publishError{Result: resultUnavailable, Sent: true, Err: errors.New("closed")}, resultUnavailable, "closed before the message was confirmed; it may not have been stored"},
		{&publishError{Result: resultTimeout, Err: context.DeadlineExceeded}, resultTimeout, "within 5s, so the message was not sent"},
		{&publishError{Result: resultTimeout, Sent: true, Err: context.DeadlineExceeded}, resultTimeout, "did not confirm the message within 5s; it may not have been stored"},
		{&publishError{Result: resultReturned, Sent: true, Err: errors.New("basic.return: 312 NO_ROUTE")}, resultReturned, `exchange "pings" with routing key "ping.created"`},
		{&publishError{Result: resultNacked, Sent: true, Err: errors.New("basic.nack")}, resultNacked, "refused the message (basic.nack)"},
		{errors.New("boom"), "error", "Retry the request."},
	}
	for _, tt := range tests {
		detail, result := publishFailure(httpConfig, tt.err)
		if result != tt.result || !strings.Contains(detail, tt.detail) {
			t.Errorf("publishFailure(%v) = %q, %q; want %q and a detail containing %q", tt.err, detail, result, tt.result, tt.detail)
		}
	}
}

func TestPingPublishFails(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		detail string
	}{
		{"publish error", &publishError{Result: resultTimeout, Sent: true, Err: context.DeadlineExceeded},
			"RabbitMQ did not confirm the message within 5s"},
		{"other error", errors.New("boom"), "Retry the request."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(t, &fakePublisher{err: tt.err}, newPing(`{"msg":"hello"}`, "application/json"))
			p := mustProblem(t, rec, http.StatusServiceUnavailable)
			if !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", p.Detail, tt.detail)
			}
			if ra := rec.Header().Get("Retry-After"); ra == "" {
				t.Error("no Retry-After header on a 503")
			}
			if loc := rec.Header().Get("Location"); loc != "" {
				t.Errorf("Location = %q on a failure", loc)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		status       int
		allow        string // the Allow header of a 405
	}{
		{"GET", "/ping", http.StatusMethodNotAllowed, "POST"},
		{"PUT", "/ping", http.StatusMethodNotAllowed, "POST"},
		{"DELETE", "/ping", http.StatusMethodNotAllowed, "POST"},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"POST", "/readyz", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/metrics", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"GET", "/", http.StatusNotFound, ""},
		{"GET", "/pong", http.StatusNotFound, ""},
		{"POST", "/ping/", http.StatusNotFound, ""},
		{"GET", "/nope", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := serve(t, &fakePublisher{}, httptest.NewRequest(tt.method, tt.path, nil))
			mustProblem(t, rec, tt.status)
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestHealthzAndReadyz(t *testing.T) {
	pub := &fakePublisher{}
	get := func(path string) *httptest.ResponseRecorder {
		return serve(t, pub, httptest.NewRequest(http.MethodGet, path, nil))
	}
	checkJSON := func(rec *httptest.ResponseRecorder, want string) {
		t.Helper()
		if rec.Code != http.StatusOK {
			t.Fatalf("status = %d, want 200; body: %s", rec.Code, rec.Body)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != want {
			t.Errorf("body = %s, want %s", got, want)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
	}

	checkJSON(get("/healthz"), `{"status":"ok"}`)
	checkJSON(get("/readyz"), `{"status":"ready"}`)

	// Readiness follows the publisher; liveness does not.
	pub.setReady(errors.New("not connected to RabbitMQ at localhost:5672: dial tcp: connection refused; retrying"))
	p := mustProblem(t, get("/readyz"), http.StatusServiceUnavailable)
	if !strings.Contains(p.Detail, "not connected to RabbitMQ at localhost:5672") {
		t.Errorf("detail = %q, want the publisher's reason", p.Detail)
	}
	checkJSON(get("/healthz"), `{"status":"ok"}`)

	pub.setReady(nil)
	checkJSON(get("/readyz"), `{"status":"ready"}`)
}

func TestRequestID(t *testing.T) {
	plain := regexp.MustCompile(`^[0-9a-f]{32}$`)
	tests := []struct {
		name, header string
		kept         bool
	}{
		{"valid", "tutorial-42.a_b", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"missing", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"space", "a b", false},
		{"injection", "x\"}\n{\"level\":\"ERROR\"", false},
		{"non-ASCII", "é", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := &fakePublisher{}
			req := newPing(`{"msg":"hello"}`, "application/json")
			if tt.header != "" {
				req.Header.Set("X-Request-ID", tt.header)
			}
			rec := serve(t, pub, req)
			got := rec.Header().Get("X-Request-ID")
			if tt.kept && got != tt.header {
				t.Errorf("X-Request-ID = %q, want the client's %q", got, tt.header)
			}
			if !tt.kept && !plain.MatchString(got) {
				t.Errorf("X-Request-ID = %q, want a new id of 32 hex characters", got)
			}
			if msgs := pub.messages(); len(msgs) != 1 || msgs[0].RequestID != got {
				t.Errorf("published %+v, want one message with request_id %q", msgs, got)
			}
		})
	}

	// Problems carry it too.
	req := httptest.NewRequest(http.MethodGet, "/nope", nil)
	req.Header.Set("X-Request-ID", "abc")
	if p := mustProblem(t, serve(t, &fakePublisher{}, req), http.StatusNotFound); p.RequestID != "abc" {
		t.Errorf("problem request_id = %q, want abc", p.RequestID)
	}
}

func TestMetricsAndLog(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	h := newServer(logger, config{}, newMetrics(), &fakePublisher{}, newIdempotencyKeys(time.Hour, 100))
	for _, req := range []*http.Request{
		newPing(`{"msg":"hello"}`, "application/json"),
		newPing(`{}`, "application/json"),
		httptest.NewRequest(http.MethodGet, "/random/path", nil),
	} {
		req.Header.Set("X-Request-ID", "metrics-test")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`http_requests_total{code="202",route="POST /ping"} 1`,
		`http_requests_total{code="400",route="POST /ping"} 1`,
		`http_requests_total{code="404",route="other"} 1`,
		`http_request_duration_seconds_count{route="POST /ping"} 2`,
		`service01_publishes_total{result="blocked"} 0`,
		`service01_connected 0`,
		`service01_confirm_duration_seconds_bucket{le="0.0005"}`,
		`go_goroutines`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}

	// One JSON line per request, with what an operator needs to find it.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("logged %d lines for 4 requests:\n%s", len(lines), logs.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, lines[0])
	}
	want := map[string]any{"method": "POST", "path": "/ping", "route": "POST /ping", "status": float64(202), "request_id": "metrics-test"}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("log %s = %v, want %v (line: %s)", k, first[k], v, lines[0])
		}
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Errorf("log has no numeric duration_ms: %s", lines[0])
	}
}
