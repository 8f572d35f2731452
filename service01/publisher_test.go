package main

// Integration tests of the publisher against the real RabbitMQ node of
// rabbitmq_test.go. Each test declares a topology of its own (names derived
// from the test's name), so that they can share the node.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
)

// testConfig is the default configuration pointed at the test node, with
// exchange and queue names of the test's own.
func testConfig(t *testing.T, r *testRabbit) config {
	t.Helper()
	cfg, err := parseConfig(getenvFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "."))
	cfg.RabbitMQHost = "127.0.0.1"
	cfg.RabbitMQPort = r.amqpPort
	cfg.Exchange = name + ".pings"
	cfg.Queue = name + ".pings"
	cfg.DeadLetterExchange = name + ".dlx"
	cfg.DeadLetterQueue = name + ".dead"
	cfg.LogStream = name + ".log"
	// Generous: the machine is shared. Tests that expect a timeout lower it.
	cfg.ConfirmTimeout = 30 * time.Second
	return cfg
}

// testLogger shows the service's logs with go test -v only.
func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if testing.Verbose() {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustStartPublisher runs a publisher until the test ends and waits until
// it is connected with its topology declared.
func mustStartPublisher(t *testing.T, cfg config) (*amqpPublisher, *metrics) {
	t.Helper()
	m := newMetrics()
	p := newPublisher(cfg, testLogger(), m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "the publisher to be ready", 60*time.Second, func() bool { return p.Ready() == nil })
	return p, m
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustChannel opens a connection and channel of the test's own to the node.
func mustChannel(t *testing.T, r *testRabbit) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// mustGet takes the next message from queue, waiting for it.
func mustGet(t *testing.T, ch *amqp.Channel, queue string) amqp.Delivery {
	t.Helper()
	var d amqp.Delivery
	waitFor(t, "a message in "+queue, 10*time.Second, func() bool {
		var ok bool
		var err error
		d, ok, err = ch.Get(queue, true /* autoAck */)
		if err != nil {
			t.Fatalf("basic.get: %v", err)
		}
		return ok
	})
	return d
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// resultOf returns the result label a publish error would be counted under.
func resultOf(err error) string {
	if err == nil {
		return resultConfirmed
	}
	if pubErr, ok := errors.AsType[*publishError](err); ok {
		return pubErr.Result
	}
	return "not a publishError: " + err.Error()
}

func TestPublishConfirmed(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	p, m := mustStartPublisher(t, cfg)

	msg := newMessage("hello", "req-confirmed", time.Now())
	if err := p.Publish(context.Background(), msg); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	d := mustGet(t, mustChannel(t, r), cfg.Queue)
	var got message
	if err := json.Unmarshal(d.Body, &got); err != nil {
		t.Fatalf("body %s: %v", d.Body, err)
	}
	if got != msg {
		t.Errorf("body = %+v, want %+v", got, msg)
	}
	if d.DeliveryMode != amqp.Persistent {
		t.Errorf("delivery mode = %d, want persistent (2)", d.DeliveryMode)
	}
	if d.ContentType != "application/json" || d.MessageId != msg.ID || d.CorrelationId != "req-confirmed" ||
		d.AppId != "service01" || d.Type != "ping.created" || d.Timestamp.IsZero() {
		t.Errorf("properties: content type %q, message id %q, correlation id %q, app id %q, type %q, timestamp %v",
			d.ContentType, d.MessageId, d.CorrelationId, d.AppId, d.Type, d.Timestamp)
	}
	if d.Exchange != cfg.Exchange || d.RoutingKey != cfg.RoutingKey {
		t.Errorf("published to %q with key %q, want %q, %q", d.Exchange, d.RoutingKey, cfg.Exchange, cfg.RoutingKey)
	}

	if got := value(t, m.publishes.WithLabelValues(resultConfirmed)); got != 1 {
		t.Errorf("publishes_total{result=confirmed} = %v, want 1", got)
	}
	if got := value(t, m.connected); got != 1 {
		t.Errorf("connected = %v, want 1", got)
	}
}

func TestTopology(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	for _, queueType := range []string{"quorum", "classic"} {
		t.Run(queueType, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, r)
			cfg.QueueType = queueType
			mustStartPublisher(t, cfg)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := r.Ctl(ctx, "list_queues", "--quiet", "--formatter", "json", "name", "type", "durable", "arguments")
			if err != nil {
				t.Fatal(err)
			}
			var queues []struct {
				Name      string  `json:"name"`
				Type      string  `json:"type"`
				Durable   bool    `json:"durable"`
				Arguments [][]any `json:"arguments"` // [name, type, value]
			}
			if err := json.Unmarshal(out, &queues); err != nil {
				t.Fatalf("list_queues: %v: %s", err, out)
			}
			found := 0
			for _, q := range queues {
				switch q.Name {
				case cfg.Queue:
					found++
					want := map[string]any{"x-queue-type": queueType, "x-dead-letter-exchange": cfg.DeadLetterExchange}
					if queueType == "quorum" {
						want["x-delivery-limit"] = float64(cfg.DeliveryLimit)
					}
					if !q.Durable || q.Type != queueType || !sameArgs(q.Arguments, want) {
						t.Errorf("queue %+v, want durable, type %s, arguments %v", q, queueType, want)
					}
				case cfg.DeadLetterQueue:
					found++
					want := map[string]any{"x-queue-type": queueType}
					if !q.Durable || q.Type != queueType || !sameArgs(q.Arguments, want) {
						t.Errorf("dead-letter queue %+v, want durable, type %s, arguments %v", q, queueType, want)
					}
				case cfg.LogStream:
					found++
					want := map[string]any{
						"x-queue-type": "stream", "x-max-age": cfg.LogMaxAge,
						"x-max-length-bytes": float64(cfg.LogMaxBytes), "x-stream-max-segment-size-bytes": float64(cfg.LogSegmentBytes),
					}
					if !q.Durable || q.Type != "stream" || !sameArgs(q.Arguments, want) {
						t.Errorf("event log %+v, want durable, type stream, arguments %v", q, want)
					}
				}
			}
			if found != 3 {
				t.Errorf("found %d of the 3 queues in %s", found, out)
			}

			// The bindings route a message with the routing key to the queue,
			// and a dead-lettered one to the dead-letter queue.
			ch := mustChannel(t, r)
			for _, pub := range []struct{ exchange, key, queue string }{
				{cfg.Exchange, cfg.RoutingKey, cfg.Queue},
				{cfg.DeadLetterExchange, "any key", cfg.DeadLetterQueue},
			} {
				if err := ch.PublishWithContext(ctx, pub.exchange, pub.key, false, false, amqp.Publishing{Body: []byte(pub.queue)}); err != nil {
					t.Fatal(err)
				}
				if d := mustGet(t, ch, pub.queue); string(d.Body) != pub.queue {
					t.Errorf("got %q from %s", d.Body, pub.queue)
				}
			}
		})
	}
}

// sameArgs compares queue arguments as rabbitmqctl prints them, a list of
// [name, type, value], with the expected values by name.
func sameArgs(got [][]any, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for _, arg := range got {
		if len(arg) != 3 || want[arg[0].(string)] != arg[2] {
			return false
		}
	}
	return true
}

func TestPublishReturnedWhenUnroutable(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.PublishChannels = 1 // the channel that saw the return is used again below
	p, m := mustStartPublisher(t, cfg)

	// Without the bindings, nothing takes the message. (With the event
	// log's binding alone, the log would take it, and the broker confirm
	// it.)
	ch := mustChannel(t, r)
	for _, q := range []string{cfg.Queue, cfg.LogStream} {
		if err := ch.QueueUnbind(q, cfg.RoutingKey, cfg.Exchange, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := p.Publish(context.Background(), newMessage("lost", "req-returned", time.Now()))
	if got := resultOf(err); got != resultReturned {
		t.Fatalf("Publish to an exchange without bindings: result %q (%v), want returned", got, err)
	}
	pubErr, _ := errors.AsType[*publishError](err)
	if !pubErr.Sent || !strings.Contains(pubErr.Err.Error(), "NO_ROUTE") {
		t.Errorf("sent %v, cause %q: want sent, and the broker's NO_ROUTE", pubErr.Sent, pubErr.Err)
	}
	if detail, _ := publishFailure(cfg, err); !strings.Contains(detail, cfg.Exchange) {
		t.Errorf("detail %q: want the exchange", detail)
	}

	// The return was this message's: the next one, routable again, is
	// confirmed on the same channel and not taken for returned.
	if err := ch.QueueBind(cfg.Queue, cfg.RoutingKey, cfg.Exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := p.Publish(context.Background(), newMessage("found", "req-routed", time.Now())); err != nil {
			t.Fatalf("Publish %d after binding again: %v", i, err)
		}
	}
	if got := value(t, m.publishes.WithLabelValues(resultReturned)); got != 1 {
		t.Errorf("publishes_total{result=returned} = %v, want 1", got)
	}
	if got := value(t, m.publishes.WithLabelValues(resultConfirmed)); got != 3 {
		t.Errorf("publishes_total{result=confirmed} = %v, want 3", got)
	}
}

// Many messages in flight on one channel, some unroutable: each publish
// learns its own message's fate, whatever the others'.
func TestReturnsMatchedWithManyInFlight(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.PublishChannels = 1
	p, _ := mustStartPublisher(t, cfg)
	s, _ := p.current()

	const n = 400
	results := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.ConfirmTimeout)
			defer cancel()
			c, err := s.acquire(ctx)
			if err != nil {
				t.Errorf("acquire: %v", err)
				return
			}
			defer s.release()
			key := cfg.RoutingKey
			if i%3 == 0 {
				key = "bound to nothing"
			}
			results[i] = resultOf(publishConfirmed(ctx, c, cfg.Exchange, key, newMessage("mixed", "req-mixed", time.Now())))
		})
	}
	wg.Wait()
	for i, got := range results {
		want := resultConfirmed
		if i%3 == 0 {
			want = resultReturned
		}
		if got != want {
			t.Errorf("publish %d: result %q, want %q", i, got, want)
		}
	}
}

// The places in flight are a bound: a request that finds none free waits,
// and times out if none frees in time.
func TestPublishWaitsForAPlaceInFlight(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.MaxInFlight = 1
	cfg.ConfirmTimeout = 300 * time.Millisecond
	p, _ := mustStartPublisher(t, cfg)
	s, _ := p.current()

	if _, err := s.acquire(context.Background()); err != nil { // the only place
		t.Fatal(err)
	}
	err := p.Publish(context.Background(), newMessage("waits", "req-waits", time.Now()))
	if got := resultOf(err); got != resultTimeout || !strings.Contains(err.Error(), "places in flight") {
		t.Fatalf("Publish with no place free: result %q (%v), want a timeout waiting for a place", got, err)
	}
	s.release()
	if err := p.Publish(context.Background(), newMessage("goes", "req-goes", time.Now())); err != nil {
		t.Fatalf("Publish with the place free again: %v", err)
	}
}

func TestPublishConcurrently(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.PublishChannels = 2 // far fewer than the goroutines: they share them
	cfg.MaxInFlight = 32    // fewer than the goroutines: they wait their turn
	p, _ := mustStartPublisher(t, cfg)

	const goroutines, each = 50, 10
	var (
		mu   sync.Mutex
		sent = make(map[string]bool)
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				msg := newMessage("concurrent", "req-concurrent", time.Now())
				if err := p.Publish(context.Background(), msg); err != nil {
					t.Errorf("goroutine %d, publish %d: %v", g, i, err)
					continue
				}
				mu.Lock()
				sent[msg.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(sent) != goroutines*each {
		t.Fatalf("%d publishes confirmed, want %d", len(sent), goroutines*each)
	}

	// Every confirmed message is in the queue, once.
	ch := mustChannel(t, r)
	deliveries, err := ch.Consume(cfg.Queue, "", true /* autoAck */, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	received := make(map[string]int)
	timeout := time.After(60 * time.Second)
	for len(received) < len(sent) {
		select {
		case d := <-deliveries:
			received[d.MessageId]++
		case <-timeout:
			t.Fatalf("received %d of %d messages", len(received), len(sent))
		}
	}
	for id, n := range received {
		if !sent[id] || n != 1 {
			t.Errorf("message %s received %d times, sent: %v", id, n, sent[id])
		}
	}
	q, err := ch.QueueDeclarePassive(cfg.Queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Errorf("%d more messages in the queue than were published", q.Messages)
	}
}

// The broker goes away and comes back: the publisher answers at once while
// it is gone, and recovers on its own.
// Not parallel: it stops the node the other tests use.
func TestBrokerRestart(t *testing.T) {
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	p, m := mustStartPublisher(t, cfg)
	if err := p.Publish(context.Background(), newMessage("before", "req-before", time.Now())); err != nil {
		t.Fatalf("Publish before the restart: %v", err)
	}

	halted := true
	r.Halt(false)
	t.Cleanup(func() {
		if halted {
			if err := r.Start(); err != nil {
				t.Errorf("restart RabbitMQ: %v", err)
			}
		}
	})

	waitFor(t, "the publisher to notice", 30*time.Second, func() bool { return p.Ready() != nil })
	if err := p.Ready(); !strings.Contains(err.Error(), cfg.RabbitMQAddr()) {
		t.Errorf("Ready() = %q, want it to name the broker %s", err, cfg.RabbitMQAddr())
	}
	if got := value(t, m.connected); got != 0 {
		t.Errorf("connected = %v while the broker is down, want 0", got)
	}
	// With a 30 s confirm timeout, "unavailable" (not "timeout") shows that
	// it answered at once.
	err := p.Publish(context.Background(), newMessage("during", "req-during", time.Now()))
	if got := resultOf(err); got != resultUnavailable {
		t.Fatalf("Publish while the broker is down: result %q (%v), want unavailable", got, err)
	}

	if err := r.Start(); err != nil {
		t.Fatalf("restart RabbitMQ: %v", err)
	}
	halted = false
	waitFor(t, "the publisher to reconnect", 60*time.Second, func() bool { return p.Ready() == nil })
	if err := p.Publish(context.Background(), newMessage("after", "req-after", time.Now())); err != nil {
		t.Fatalf("Publish after the restart: %v", err)
	}

	// Both confirmed messages survived the restart, in order.
	ch := mustChannel(t, r)
	for _, want := range []string{"before", "after"} {
		var got message
		if err := json.Unmarshal(mustGet(t, ch, cfg.Queue).Body, &got); err != nil || got.Msg != want {
			t.Errorf("got %+v (%v), want msg %q", got, err, want)
		}
	}
}

// A memory alarm blocks publishing connections: Publish answers "blocked"
// without waiting, and works again once the alarm clears.
// Not parallel: the alarm stops every publisher on the node.
func TestMemoryAlarm(t *testing.T) {
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.ConfirmTimeout = 2 * time.Second
	p, m := mustStartPublisher(t, cfg)
	if err := p.Publish(context.Background(), newMessage("before", "req-before", time.Now())); err != nil {
		t.Fatalf("Publish before the alarm: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clearAlarm := mustRaiseMemoryAlarm(t, r)

	// RabbitMQ tells a connection it is blocked when it next publishes: the
	// first publish may wait out the confirm timeout, the next are refused
	// at once.
	var err error
	waitFor(t, "a publish to be refused as blocked", 60*time.Second, func() bool {
		err = p.Publish(context.Background(), newMessage("during", "req-during", time.Now()))
		switch resultOf(err) {
		case resultBlocked:
			return true
		case resultTimeout, resultConfirmed: // the alarm is not on yet, or not yet known
			return false
		}
		t.Fatalf("Publish during the alarm: %v", err)
		return false
	})
	if detail, _ := publishFailure(cfg, err); !strings.Contains(detail, "memory or disk alarm") {
		t.Errorf("detail = %q, want it to name the alarm", detail)
	}
	if p.Ready() != nil {
		t.Errorf("Ready() = %v during an alarm; the connection is still up", p.Ready())
	}

	// The broker reads nothing more from a blocked connection, so opening a
	// channel (to replace one that timed out) would wait for the end of the
	// alarm; it must give up at the request's deadline instead.
	s, _ := p.current()
	openCtx, cancelOpen := context.WithTimeout(ctx, time.Second)
	defer cancelOpen()
	opened := make(chan error, 1)
	go func() {
		c, err := openConfirmChannel(openCtx, s.conn, cfg.MaxInFlight)
		if err == nil {
			c.ch.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Logf("opening a channel while blocked: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("opening a channel on the blocked connection ignored its deadline")
	}

	clearAlarm()
	waitFor(t, "publishing to work again", 60*time.Second, func() bool {
		err := p.Publish(context.Background(), newMessage("after", "req-after", time.Now()))
		switch resultOf(err) {
		case resultConfirmed:
			return true
		case resultBlocked, resultTimeout:
			return false
		}
		t.Fatalf("Publish after the alarm: %v", err)
		return false
	})
	if got := value(t, m.publishes.WithLabelValues(resultBlocked)); got < 1 {
		t.Errorf("publishes_total{result=blocked} = %v, want at least 1", got)
	}
}

// A queue that exists with another type cannot be fixed by retrying: Run
// stops with an error that says what and how to fix it.
func TestTopologyMismatch(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	ch := mustChannel(t, r)
	// Everything as service01 declares it but the type.
	args := amqp.Table{"x-queue-type": "classic", "x-dead-letter-exchange": cfg.DeadLetterExchange}
	if _, err := ch.QueueDeclare(cfg.Queue, true, false, false, false, args); err != nil {
		t.Fatal(err)
	}

	p := newPublisher(cfg, testLogger(), newMetrics()) // quorum, the default
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := p.Run(ctx)
	if err == nil {
		t.Fatal("Run returned nil, want the mismatch")
	}
	if _, ok := errors.AsType[*mismatchError](err); !ok {
		t.Errorf("Run: %v (%T), want a *mismatchError", err, err)
	}
	for _, want := range []string{
		`queue "` + cfg.Queue + `" already exists with other arguments`,
		"inequivalent arg 'x-queue-type'",
		"received 'quorum' but current is 'classic'",
		"Queues > " + cfg.Queue + " > Delete",
		"set RABBITMQ_QUEUE_TYPE to match",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if p.Ready() == nil {
		t.Error("Ready() = nil after a mismatch")
	}
}

// peekChannel returns the channel in the first slot of p's session.
func peekChannel(t *testing.T, p *amqpPublisher) *confirmChannel {
	t.Helper()
	s, err := p.current()
	if s == nil {
		t.Fatalf("not connected: %v", err)
	}
	c := <-s.channels[0]
	s.channels[0] <- c
	return c
}

// A queue that refuses the message makes the broker nack it; the channel
// that saw the nack is closed and the next message goes on a new one.
func TestPublishNacked(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.PublishChannels = 1 // the channel that saw the nack is replaced below
	p, m := mustStartPublisher(t, cfg)

	// A second queue bound with the same key that takes no message at all:
	// the message is confirmed only if every queue it is routed to takes it.
	ch := mustChannel(t, r)
	full := cfg.Queue + ".full"
	if _, err := ch.QueueDeclare(full, false, true, false, false, amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(full, cfg.RoutingKey, cfg.Exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	err := p.Publish(context.Background(), newMessage("refused", "req-nacked", time.Now()))
	if got := resultOf(err); got != resultNacked {
		t.Fatalf("Publish to a full queue: result %q (%v), want nacked", got, err)
	}
	nacked := peekChannel(t, p)
	waitFor(t, "the channel that saw the nack to close", 5*time.Second, nacked.ch.IsClosed)

	if _, err := ch.QueueDelete(full, false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(context.Background(), newMessage("taken", "req-after-nack", time.Now())); err != nil {
		t.Fatalf("Publish after removing the full queue: %v", err)
	}
	if peekChannel(t, p) == nacked {
		t.Error("the message after the nack went on the channel that saw it, want a new channel")
	}
	if got := value(t, m.publishes.WithLabelValues(resultNacked)); got != 1 {
		t.Errorf("publishes_total{result=nacked} = %v, want 1", got)
	}
}

// The connection closes while a message waits for its confirm: the publish
// fails as unavailable (not as a nack), and the publisher reconnects.
// Not parallel: it raises a memory alarm to hold the confirm back.
func TestConnectionClosedWhileWaitingForConfirm(t *testing.T) {
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	p, _ := mustStartPublisher(t, cfg) // 30 s confirm timeout

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	clearAlarm := mustRaiseMemoryAlarm(t, r)
	s, _ := p.current()
	// Once the alarm is on, a message sent is held unconfirmed and the
	// connection reports itself blocked. Publish until that happens.
	done := make(chan error, 1)
	waitFor(t, "a publish to be held by the alarm", 60*time.Second, func() bool {
		go func() { done <- p.Publish(context.Background(), newMessage("held", "req-held", time.Now())) }()
		for {
			select {
			case err := <-done: // confirmed before the alarm took effect
				if err != nil {
					t.Fatalf("Publish while raising the alarm: %v", err)
				}
				return false
			default:
			}
			if s.blockedReason() != "" {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	if _, err := r.Ctl(ctx, "close_all_connections", "closed by the test"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if got := resultOf(err); got != resultUnavailable {
			t.Fatalf("Publish whose connection closed: result %q (%v), want unavailable", got, err)
		}
	case <-ctx.Done():
		t.Fatal("Publish did not return after its connection closed")
	}

	clearAlarm()
	waitFor(t, "publishing to work again", 60*time.Second, func() bool {
		return p.Ready() == nil && p.Publish(context.Background(), newMessage("after", "req-after", time.Now())) == nil
	})
}

// A message whose confirm timed out still awaits it at the broker: it keeps
// its place in flight until the confirm comes, so that a broker falling
// behind never holds more than SERVICE01_MAX_IN_FLIGHT of service01's
// messages. Not parallel: it raises a memory alarm to hold confirms back.
func TestTimedOutConfirmKeepsItsPlace(t *testing.T) {
	r := mustRabbit(t)
	cfg := testConfig(t, r)
	cfg.ConfirmTimeout = time.Second
	p, _ := mustStartPublisher(t, cfg)
	s, _ := p.current()

	clearAlarm := mustRaiseMemoryAlarm(t, r)
	timedOut := 0
	waitFor(t, "a publish to time out", 60*time.Second, func() bool {
		err := p.Publish(context.Background(), newMessage("held", "req-held", time.Now()))
		switch resultOf(err) {
		case resultTimeout:
			timedOut++
			return true
		case resultConfirmed: // the alarm is not on yet
			return false
		}
		t.Fatalf("Publish while raising the alarm: %v", err)
		return false
	})
	if held := len(s.inFlight); held != timedOut {
		t.Errorf("%d places in flight taken after %d timed-out publish, want as many", held, timedOut)
	}

	clearAlarm()
	waitFor(t, "the late confirm to free its place", 60*time.Second, func() bool { return len(s.inFlight) == 0 })
}

// mustRaiseMemoryAlarm raises a memory alarm on the node (a high watermark
// of 0), which blocks every publishing connection, and returns the
// function that clears it; the alarm is cleared when the test ends in any
// case.
func mustRaiseMemoryAlarm(t *testing.T, r *testRabbit) (clear func()) {
	t.Helper()
	setWatermark := func(v string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, err := r.Ctl(ctx, "set_vm_memory_high_watermark", v)
		return err
	}
	if err := setWatermark("0"); err != nil {
		t.Fatal(err)
	}
	cleared := false
	t.Cleanup(func() {
		if !cleared {
			setWatermark("0.4")
		}
	})
	return func() {
		t.Helper()
		if err := setWatermark("0.4"); err != nil {
			t.Fatal(err)
		}
		cleared = true
	}
}
