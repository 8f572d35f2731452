package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseIdempotencyKey(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    string
		wantErr string
	}{
		{"absent", nil, "", ""},
		{"uuid", []string{"0b8e7e8a-4b8e-4f4e-9d3c-2a1b0c9d8e7f"}, "0b8e7e8a-4b8e-4f4e-9d3c-2a1b0c9d8e7f", ""},
		{"one character", []string{"!"}, "!", ""},
		{"every visible character", []string{"!~azAZ09\"{}"}, "!~azAZ09\"{}", ""},
		{"255 characters", []string{strings.Repeat("k", 255)}, strings.Repeat("k", 255), ""},
		{"empty", []string{""}, "", "is 0 characters long"},
		{"256 characters", []string{strings.Repeat("k", 256)}, "", "is 256 characters long"},
		{"space", []string{"a b"}, "", "byte 0x20 at position 2"},
		{"tab", []string{"\tab"}, "", "byte 0x09 at position 1"},
		{"DEL", []string{"ab\x7f"}, "", "byte 0x7F at position 3"},
		{"not ASCII", []string{"clé"}, "", "byte 0xC3 at position 3"},
		{"twice", []string{"a", "b"}, "", "appears 2 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Idempotency-Key", v)
			}
			got, err := parseIdempotencyKey(h)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("parseIdempotencyKey = %q, %v; want %q, nil", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("parseIdempotencyKey accepted %q", tt.values)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "0x21-0x7E") {
				t.Errorf("error %q; want it to mention %q and the rule", err, tt.wantErr)
			}
		})
	}
}

// countingPublish returns a publish function that counts its calls and
// answers with err.
func countingPublish(calls *atomic.Int32, err error) func(message) error {
	return func(message) error {
		calls.Add(1)
		return err
	}
}

func TestIdempotencyKeysReplay(t *testing.T) {
	keys := newIdempotencyKeys(time.Hour, 10)
	var calls atomic.Int32
	first := message{ID: "id-1", Msg: "hello"}
	m, replayed, err := keys.do(t.Context(), "k", first, countingPublish(&calls, nil))
	if err != nil || replayed || m != first {
		t.Fatalf("first do = %+v, %v, %v; want %+v, false, nil", m, replayed, err, first)
	}
	m, replayed, err = keys.do(t.Context(), "k", message{ID: "id-2", Msg: "hello"}, countingPublish(&calls, nil))
	if err != nil || !replayed || m != first {
		t.Fatalf("second do = %+v, %v, %v; want %+v, true, nil", m, replayed, err, first)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("published %d times, want 1", n)
	}

	_, _, err = keys.do(t.Context(), "k", message{ID: "id-3", Msg: "other"}, countingPublish(&calls, nil))
	if _, ok := errors.AsType[*keyReusedError](err); !ok {
		t.Fatalf("do with another msg: err = %v, want a *keyReusedError", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("published %d times, want 1", n)
	}
}

// TestIdempotencyKeysRetryAfterFailure checks that a failed publish is not
// an answer to repeat, and that the retry publishes the same message, with
// the same id, since the failed one may have been stored after all.
func TestIdempotencyKeysRetryAfterFailure(t *testing.T) {
	keys := newIdempotencyKeys(time.Hour, 10)
	var published []message
	var failure error
	publish := func(m message) error {
		published = append(published, m)
		return failure
	}
	first := message{ID: "id-1", Msg: "hello", Date: "first"}
	failure = errors.New("no confirm in time")
	if _, _, err := keys.do(t.Context(), "k", first, publish); err != failure {
		t.Fatalf("do = %v, want %v", err, failure)
	}
	failure = nil
	m, replayed, err := keys.do(t.Context(), "k", message{ID: "id-2", Msg: "hello", Date: "second"}, publish)
	if err != nil || replayed || m != first {
		t.Fatalf("retry = %+v, %v, %v; want %+v published again", m, replayed, err, first)
	}
	if len(published) != 2 || published[1] != first {
		t.Errorf("published %+v, want the first message twice", published)
	}
	if m, replayed, _ := keys.do(t.Context(), "k", message{ID: "id-3", Msg: "hello"}, publish); !replayed || m != first || len(published) != 2 {
		t.Errorf("after the confirm: %+v, replayed %v, %d publishes; want the first message replayed", m, replayed, len(published))
	}
}

func TestIdempotencyKeysExpireAndEvict(t *testing.T) {
	keys := newIdempotencyKeys(time.Minute, 3)
	now := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	keys.now = func() time.Time { return now }
	var calls atomic.Int32
	for _, k := range []string{"a", "b", "c", "d"} {
		if _, _, err := keys.do(t.Context(), k, message{ID: k, Msg: "m"}, countingPublish(&calls, nil)); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second)
	}
	// Four keys, room for three: "a" was evicted, so it publishes again.
	if keys.Len() != 3 {
		t.Errorf("Len = %d, want 3", keys.Len())
	}
	if _, replayed, _ := keys.do(t.Context(), "a", message{ID: "a2", Msg: "m"}, countingPublish(&calls, nil)); replayed {
		t.Error("evicted key a was replayed")
	}
	if _, replayed, _ := keys.do(t.Context(), "d", message{ID: "d2", Msg: "m"}, countingPublish(&calls, nil)); !replayed {
		t.Error("key d was not replayed within its TTL")
	}

	// "a" came back at 9:00:40 and evicted "b"; "c" and "d" came at
	// 9:00:20 and :30, so at 9:01:25 "c" has expired.
	now = time.Date(2026, 11, 22, 9, 1, 25, 0, time.UTC)
	if _, replayed, _ := keys.do(t.Context(), "d", message{ID: "d3", Msg: "m"}, countingPublish(&calls, nil)); !replayed {
		t.Error("key d was not replayed within its TTL")
	}
	if keys.Len() != 2 { // "a" (again) and "d"
		t.Errorf("Len = %d after expiry, want 2", keys.Len())
	}
	if _, replayed, _ := keys.do(t.Context(), "b", message{ID: "b2", Msg: "m"}, countingPublish(&calls, nil)); replayed {
		t.Error("expired key b was replayed")
	}
}

// TestIdempotencyKeysSingleFlight sends the same key many times at once:
// one publishes, the others wait for it and answer with its message.
func TestIdempotencyKeysSingleFlight(t *testing.T) {
	keys := newIdempotencyKeys(time.Hour, 10)
	release := make(chan struct{})
	started := make(chan struct{})
	var calls atomic.Int32
	publish := func(message) error {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return nil
	}

	const n = 20
	results := make([]message, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m, _, err := keys.do(context.Background(), "k", message{ID: "id-" + string(rune('a'+i)), Msg: "hello"}, publish)
			if err != nil {
				t.Error(err)
			}
			results[i] = m
		})
	}
	<-started
	close(release)
	wg.Wait()

	if got := calls.Load(); got != 1 {
		t.Errorf("published %d times, want 1", got)
	}
	for i, m := range results {
		if m != results[0] {
			t.Errorf("result %d = %+v, want %+v", i, m, results[0])
		}
	}
}

// TestIdempotencyKeysWaiterSharesFailure checks that a request waiting for
// the first with its key gets that one's failure, and that the key is free
// again afterwards.
func TestIdempotencyKeysWaiterSharesFailure(t *testing.T) {
	keys := newIdempotencyKeys(time.Hour, 10)
	broken := errors.New("broker down")
	started, release := make(chan struct{}), make(chan struct{})
	var inFlight atomic.Bool
	inFlight.Store(true)
	firstErr := make(chan error, 1)
	go func() {
		_, _, err := keys.do(t.Context(), "k", message{ID: "1", Msg: "hello"}, func(message) error {
			close(started)
			<-release
			inFlight.Store(false)
			return broken
		})
		firstErr <- err
	}()
	<-started
	secondErr := make(chan error, 1)
	go func() {
		m, _, err := keys.do(t.Context(), "k", message{ID: "2", Msg: "hello"}, func(message) error {
			if inFlight.Load() {
				t.Error("the second request published while the first was in flight")
			}
			return nil
		})
		if m.ID != "1" {
			t.Errorf("the second request got message %q, want the first's, 1", m.ID)
		}
		secondErr <- err
	}()
	// The second may or may not have reached the wait before the first
	// fails: it gets the first's failure, or publishes the same message
	// again after.
	close(release)
	if err := <-firstErr; err != broken {
		t.Errorf("first: %v, want %v", err, broken)
	}
	if err := <-secondErr; err != nil && err != broken {
		t.Errorf("second: %v, want %v or nil", err, broken)
	}
}

// TestPingIdempotencyKey sends the same key through the HTTP API: one
// message is published, every answer is the same 202, the repeats say so.
func TestPingIdempotencyKey(t *testing.T) {
	pub := &fakePublisher{}
	h := newServer(discardLogger(), config{}, newMetrics(), pub, newIdempotencyKeys(time.Hour, 100))
	send := func(msg, key string) *httptest.ResponseRecorder {
		req := newPing(`{"msg":"`+msg+`"}`, "application/json")
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	first := send("hello", "order-42")
	if first.Code != http.StatusAccepted {
		t.Fatalf("status = %d, want 202; body: %s", first.Code, first.Body)
	}
	if first.Header().Get("Idempotent-Replayed") != "" {
		t.Error("the first answer says Idempotent-Replayed")
	}
	for range 3 {
		again := send("hello", "order-42")
		if again.Code != http.StatusAccepted || again.Body.String() != first.Body.String() {
			t.Fatalf("retry: %d %s; want 202 %s", again.Code, again.Body, first.Body)
		}
		if got := again.Header().Get("Location"); got != first.Header().Get("Location") {
			t.Errorf("retry Location = %q, want %q", got, first.Header().Get("Location"))
		}
		if again.Header().Get("Idempotent-Replayed") != "true" {
			t.Error("a replayed answer lacks Idempotent-Replayed: true")
		}
	}
	if n := len(pub.messages()); n != 1 {
		t.Errorf("published %d messages, want 1", n)
	}

	other := send("hello", "order-43")
	if other.Code != http.StatusAccepted || other.Body.String() == first.Body.String() {
		t.Errorf("another key: %d %s; want 202 with a new message", other.Code, other.Body)
	}

	reused := send("bye", "order-42")
	p := mustProblem(t, reused, http.StatusUnprocessableEntity)
	if !strings.Contains(p.Detail, "already used for a different msg") {
		t.Errorf("detail = %q", p.Detail)
	}
	if n := len(pub.messages()); n != 2 {
		t.Errorf("published %d messages, want 2", n)
	}
}

func TestPingIdempotencyKeyInvalid(t *testing.T) {
	pub := &fakePublisher{}
	req := newPing(`{"msg":"hello"}`, "application/json")
	req.Header.Set("Idempotency-Key", "has space")
	p := mustProblem(t, serve(t, pub, req), http.StatusBadRequest)
	if !strings.Contains(p.Detail, "1 to 255 visible ASCII characters (0x21-0x7E") {
		t.Errorf("detail = %q, want the rule", p.Detail)
	}
	if n := len(pub.messages()); n != 0 {
		t.Errorf("published %d messages, want none", n)
	}
}

// TestPingIdempotencyKeyRetryAfterFailure checks that a 503 is not
// repeated: the retry with the same key publishes and gets a 202.
func TestPingIdempotencyKeyRetryAfterFailure(t *testing.T) {
	pub := &fakePublisher{err: &publishError{Result: resultUnavailable, Err: errors.New("down")}}
	h := newServer(discardLogger(), config{}, newMetrics(), pub, newIdempotencyKeys(time.Hour, 100))
	send := func() *httptest.ResponseRecorder {
		req := newPing(`{"msg":"hello"}`, "application/json")
		req.Header.Set("Idempotency-Key", "k1")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	mustProblem(t, send(), http.StatusServiceUnavailable)
	pub.mu.Lock()
	pub.err = nil
	pub.mu.Unlock()
	if rec := send(); rec.Code != http.StatusAccepted || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry: %d (replayed %q) %s; want a fresh 202", rec.Code, rec.Header().Get("Idempotent-Replayed"), rec.Body)
	}
	if n := len(pub.messages()); n != 1 {
		t.Errorf("published %d messages, want 1", n)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestPingIdempotencyKeyWaiterHangsUp checks a request that waits for an
// earlier one with its key and whose client hangs up meanwhile: it is
// logged and counted as 499 (nginx's code for it), not as a failed publish,
// and the earlier request still publishes the message once.
func TestPingIdempotencyKeyWaiterHangsUp(t *testing.T) {
	release := make(chan struct{})
	pub := &blockingPublisher{started: make(chan struct{}), release: release}
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	h := newServer(logger, config{}, newMetrics(), pub, newIdempotencyKeys(time.Hour, 100))
	send := func(ctx context.Context) *httptest.ResponseRecorder {
		req := newPing(`{"msg":"hello"}`, "application/json").WithContext(ctx)
		req.Header.Set("Idempotency-Key", "order-7")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	firstDone := make(chan *httptest.ResponseRecorder)
	go func() { firstDone <- send(context.Background()) }()
	<-pub.started

	ctx, cancel := context.WithCancel(context.Background())
	waiterDone := make(chan *httptest.ResponseRecorder)
	go func() { waiterDone <- send(ctx) }()
	cancel() // the waiter's client hangs up
	waiter := <-waiterDone
	if waiter.Code != statusClientClosedRequest {
		t.Errorf("waiter status = %d, want %d", waiter.Code, statusClientClosedRequest)
	}

	close(release)
	if first := <-firstDone; first.Code != http.StatusAccepted {
		t.Errorf("first status = %d, want 202; body: %s", first.Code, first.Body)
	}
	if n := pub.calls.Load(); n != 1 {
		t.Errorf("published %d times, want 1", n)
	}
	out := logs.String()
	if strings.Contains(out, "publish failed") {
		t.Errorf("the hang-up is logged as a failed publish:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"client went away while waiting for the earlier request with its Idempotency-Key"`) ||
		!strings.Contains(out, `"status":499`) {
		t.Errorf("the log does not say the client went away, with status 499:\n%s", out)
	}
}

// blockingPublisher holds every Publish until release is closed.
type blockingPublisher struct {
	calls   atomic.Int32
	started chan struct{} // closed when the first Publish begins
	release chan struct{}
}

func (b *blockingPublisher) Publish(ctx context.Context, m message) error {
	if b.calls.Add(1) == 1 {
		close(b.started)
	}
	<-b.release
	return nil
}

func (b *blockingPublisher) Ready() error { return nil }
