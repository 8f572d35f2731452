package main

// End-to-end tests: the real program, run(), on a free port against the
// test RabbitMQ node, spoken to over a socket.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that run's logger and the test may share.
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

// testEnv is the environment for run: the test node, a free port and the
// test's own names.
func testEnv(t *testing.T, r *testRabbit) (map[string]string, config) {
	t.Helper()
	cfg := testConfig(t, r)
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Port = ports[0]
	return map[string]string{
		"SERVICE01_PORT":                strconv.Itoa(cfg.Port),
		"LISTEN_HOST":                   "127.0.0.1",
		"RABBITMQ_HOST":                 cfg.RabbitMQHost,
		"RABBITMQ_PORT":                 strconv.Itoa(cfg.RabbitMQPort),
		"RABBITMQ_EXCHANGE":             cfg.Exchange,
		"RABBITMQ_QUEUE":                cfg.Queue,
		"RABBITMQ_DEAD_LETTER_EXCHANGE": cfg.DeadLetterExchange,
		"RABBITMQ_DEAD_LETTER_QUEUE":    cfg.DeadLetterQueue,
		"RABBITMQ_LOG_STREAM":           cfg.LogStream,
		"SERVICE01_CONFIRM_TIMEOUT":     cfg.ConfirmTimeout.String(),
	}, cfg
}

func TestRun(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	env, cfg := testEnv(t, r)
	base := "http://" + cfg.HTTPAddr()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"service01"}, getenvFrom(env), &stdout, io.Discard) }()

	client := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "GET /readyz to answer 200", 60*time.Second, func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// The container healthcheck agrees.
	if err := run(context.Background(), []string{"service01", "-healthcheck"}, getenvFrom(env), io.Discard, io.Discard); err != nil {
		t.Errorf("service01 -healthcheck while ready: %v", err)
	}

	req, err := http.NewRequest(http.MethodPost, base+"/ping", strings.NewReader(`{"msg":"hello over a socket"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "e2e-1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /ping = %d, want 202: %s", resp.StatusCode, body)
	}
	var reply message
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatalf("202 body %s: %v", body, err)
	}
	if reply.Msg != "hello over a socket" || reply.RequestID != "e2e-1" || resp.Header.Get("Location") != "/pong/"+reply.ID {
		t.Errorf("202 %s, Location %q", body, resp.Header.Get("Location"))
	}

	// The very message of the reply is in the queue.
	d := mustGet(t, mustChannel(t, r), cfg.Queue)
	var published message
	if err := json.Unmarshal(d.Body, &published); err != nil || published != reply {
		t.Errorf("queued %s (%v), want the reply %+v", d.Body, err, reply)
	}

	// Graceful shutdown: run returns nil.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within 30s of cancel")
	}
	if err := run(context.Background(), []string{"service01", "-healthcheck"}, getenvFrom(env), io.Discard, io.Discard); err == nil {
		t.Error("service01 -healthcheck succeeded after shutdown")
	}

	// One JSON log line for the request, carrying its id.
	logs := stdout.String()
	found := false
	for line := range strings.Lines(logs) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		if entry["msg"] == "http request" && entry["request_id"] == "e2e-1" {
			found = true
			if entry["route"] != "POST /ping" || entry["status"] != float64(202) {
				t.Errorf("request log %v, want route POST /ping and status 202", entry)
			}
		}
	}
	if !found {
		t.Errorf("no request log line with request_id e2e-1 in:\n%s", logs)
	}
	for _, want := range []string{`"msg":"connected to RabbitMQ"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}

func TestRunNotReadyWithoutBroker(t *testing.T) {
	t.Parallel()
	ports, err := freePorts(2) // one for HTTP, one with no broker behind it
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SERVICE01_PORT": strconv.Itoa(ports[0]),
		"LISTEN_HOST":    "127.0.0.1",
		"RABBITMQ_HOST":  "127.0.0.1",
		"RABBITMQ_PORT":  strconv.Itoa(ports[1]),
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"service01"}, getenvFrom(env), io.Discard, io.Discard) }()

	// The HTTP server is up though the broker is not: alive, not ready, and
	// POST /ping answers 503 at once.
	client := &http.Client{Timeout: 10 * time.Second}
	waitFor(t, "GET /healthz to answer", 30*time.Second, func() bool {
		resp, err := client.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var p problem
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(p.Detail, "RabbitMQ at 127.0.0.1:"+env["RABBITMQ_PORT"]) {
		t.Errorf("GET /readyz = %d %+v, want 503 naming the broker", resp.StatusCode, p)
	}
	err = run(context.Background(), []string{"service01", "-healthcheck"}, getenvFrom(env), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("service01 -healthcheck = %v, want not ready", err)
	}

	resp, err = client.Post(base+"/ping", "application/json", strings.NewReader(`{"msg":"hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(p.Detail, "not connected to RabbitMQ") {
		t.Errorf("POST /ping = %d %+v, want 503 with Retry-After saying it is not connected", resp.StatusCode, p)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v, want nil", err)
	}
}

func TestRunInvalidConfig(t *testing.T) {
	t.Parallel()
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"service01"}, getenvFrom(map[string]string{
		"RABBITMQ_QUEUE_TYPE":        "x",
		"SERVICE01_PUBLISH_CHANNELS": "0",
	}), &stdout, io.Discard)
	if err == nil {
		t.Fatal("run with an invalid configuration returned nil")
	}
	for _, want := range []string{
		`RABBITMQ_QUEUE_TYPE: must be "quorum" or "classic", got "x"`,
		"SERVICE01_PUBLISH_CHANNELS: must be between 1 and 2047",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("run logged before failing on its configuration: %s", stdout.String())
	}
}

func TestRunTopologyMismatch(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	env, cfg := testEnv(t, r)
	ch := mustChannel(t, r)
	if err := ch.ExchangeDeclare(cfg.Exchange, "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, []string{"service01"}, getenvFrom(env), io.Discard, io.Discard)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("run = %v (context: %v), want the mismatch before the deadline", err, ctx.Err())
	}
	for _, want := range []string{`exchange "` + cfg.Exchange + `" already exists`, "inequivalent arg 'type'", "Exchanges > " + cfg.Exchange + " > Delete"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
