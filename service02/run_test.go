package main

// End-to-end tests of run: the real program, on a free port, against the
// real broker.

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// runningService is run(...) going in the background.
type runningService struct {
	base   string // http://127.0.0.1:port
	env    map[string]string
	stdout *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startRun starts run with env (plus a free SERVICE02_PORT on the loopback).
func startRun(tb testing.TB, env map[string]string) *runningService {
	tb.Helper()
	ports, err := freePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	env["SERVICE02_PORT"] = strconv.Itoa(ports[0])
	env["LISTEN_HOST"] = "127.0.0.1"
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningService{
		base:   "http://127.0.0.1:" + env["SERVICE02_PORT"],
		env:    env,
		stdout: &syncBuffer{},
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { rs.done <- run(ctx, []string{"service02"}, getenvFrom(env), rs.stdout, io.Discard) }()
	tb.Cleanup(func() {
		cancel()
		<-rs.done
	})
	return rs
}

// wait waits for run to return and returns its error.
func (rs *runningService) wait(tb testing.TB) error {
	tb.Helper()
	select {
	case err := <-rs.done:
		rs.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		tb.Fatal("run did not return within 30s")
		return nil
	}
}

var testClient = &http.Client{Timeout: 5 * time.Second}

// get returns the status and body of GET path, or status 0 when the server
// does not answer.
func (rs *runningService) get(path string) (int, []byte) {
	resp, err := testClient.Get(rs.base + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// brokerEnv is the environment that points run at the test broker and the
// test's own exchanges and queues.
func brokerEnv(r *testRabbit, cfg config) map[string]string {
	return map[string]string{
		"RABBITMQ_HOST":                 "127.0.0.1",
		"RABBITMQ_PORT":                 strconv.Itoa(r.amqpPort),
		"RABBITMQ_EXCHANGE":             cfg.Exchange,
		"RABBITMQ_QUEUE":                cfg.Queue,
		"RABBITMQ_DEAD_LETTER_EXCHANGE": cfg.DeadLetterExchange,
		"RABBITMQ_DEAD_LETTER_QUEUE":    cfg.DeadLetterQueue,
		"RABBITMQ_LOG_STREAM":           cfg.LogStream,
	}
}

func TestRun(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rs := startRun(t, brokerEnv(r, cfg))

	waitFor(t, 60*time.Second, "GET /readyz to answer 200", func() bool {
		status, _ := rs.get("/readyz")
		return status == http.StatusOK
	})
	if err := run(context.Background(), []string{"service02", "-healthcheck"}, getenvFrom(rs.env), io.Discard, io.Discard); err != nil {
		t.Errorf("-healthcheck while ready: %v", err)
	}

	// The golden message, with an id of this test's own.
	var golden map[string]any
	if err := json.Unmarshal(mustReadGolden(t), &golden); err != nil {
		t.Fatal(err)
	}
	golden["id"] = "run-" + cfg.Queue
	body, _ := json.Marshal(golden)
	newTestPublisher(t, r, cfg).mustPublish(body)

	var page pongPage
	waitFor(t, 30*time.Second, "the message in GET /pong", func() bool {
		status, body := rs.get("/pong")
		return status == http.StatusOK && json.Unmarshal(body, &page) == nil && len(page.Messages) == 1
	})
	got := page.Messages[0]
	if got.ID != golden["id"] || got.Msg != golden["msg"] || got.Date != golden["date"] || got.RequestID != golden["request_id"] {
		t.Errorf("GET /pong shows %+v, want the published %v", got, golden)
	}
	if status, _ := rs.get("/pong/" + got.ID); status != http.StatusOK {
		t.Errorf("GET /pong/%s: %d, want 200", got.ID, status)
	}
	if status, body := rs.get("/metrics"); status != http.StatusOK || !strings.Contains(string(body), "service02_messages_consumed_total 1") {
		t.Errorf("GET /metrics: %d, no service02_messages_consumed_total 1", status)
	}

	rs.cancel() // as SIGTERM does
	if err := rs.wait(t); err != nil {
		t.Errorf("run returned %v after its context was cancelled, want nil", err)
	}
	if status, _ := rs.get("/healthz"); status != 0 {
		t.Errorf("GET /healthz after shutdown: %d, want no answer", status)
	}
	if err := run(context.Background(), []string{"service02", "-healthcheck"}, getenvFrom(rs.env), io.Discard, io.Discard); err == nil {
		t.Error("-healthcheck with no service running returned nil")
	}
	// One JSON log line per request, with the request id.
	if !strings.Contains(rs.stdout.String(), `"route":"GET /pong"`) || !strings.Contains(rs.stdout.String(), `"request_id":"`) {
		t.Errorf("no request log line in the output:\n%s", truncate(rs.stdout.String(), 2000))
	}
}

func TestRunWithoutBroker(t *testing.T) {
	ports, err := freePorts(1) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	rs := startRun(t, map[string]string{"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": strconv.Itoa(ports[0])})

	waitFor(t, 30*time.Second, "GET /healthz to answer", func() bool {
		status, _ := rs.get("/healthz")
		return status == http.StatusOK
	})
	var p problem
	waitFor(t, 30*time.Second, "GET /readyz to say why it is not ready", func() bool {
		status, body := rs.get("/readyz")
		return status == http.StatusServiceUnavailable && json.Unmarshal(body, &p) == nil &&
			strings.Contains(p.Detail, "connection refused")
	})
	if want := "not connected to RabbitMQ at 127.0.0.1:" + strconv.Itoa(ports[0]) + ": dial tcp"; !strings.HasPrefix(p.Detail, want) || !strings.HasSuffix(p.Detail, "; retrying") {
		t.Errorf("readiness detail %q, want %q...; retrying", p.Detail, want)
	}
	err = run(context.Background(), []string{"service02", "-healthcheck"}, getenvFrom(rs.env), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("-healthcheck while not ready: %v, want the 503 and its reason", err)
	}

	rs.cancel()
	if err := rs.wait(t); err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
}

func TestRunInvalidConfig(t *testing.T) {
	err := run(context.Background(), []string{"service02"},
		getenvFrom(map[string]string{"RABBITMQ_QUEUE_TYPE": "x", "SERVICE02_PORT": "none"}), io.Discard, io.Discard)
	if err == nil {
		t.Fatal("run accepted an invalid configuration")
	}
	for _, want := range []string{
		"\n" + `RABBITMQ_QUEUE_TYPE: must be "quorum" or "classic", got "x"`,
		"\n" + `SERVICE02_PORT: must be a whole number, got "none"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain the line %q", err, want)
		}
	}
}

func TestRunStopsOnTopologyMismatch(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	ch, closeCh := mustChannel(t, r)
	defer closeCh()
	if err := declareQueue(ch, cfg.Queue, amqp.Table{
		"x-queue-type": "quorum", "x-dead-letter-exchange": cfg.DeadLetterExchange, "x-delivery-limit": int64(5),
	}); err != nil {
		t.Fatal(err)
	}

	env := brokerEnv(r, cfg)
	env["RABBITMQ_QUEUE_TYPE"] = "classic"
	err := startRun(t, env).wait(t)
	if err == nil || !strings.Contains(err.Error(), `queue "`+cfg.Queue+`" already exists`) || !strings.Contains(err.Error(), "RABBITMQ_QUEUE_TYPE") {
		t.Errorf("run returned %v, want the queue mismatch", err)
	}
}
