package main

// Integration tests: the consumer against the real RabbitMQ node of
// rabbitmq_test.go. They share the node, so each declares its own exchanges
// and queues (named after the test), and none runs in parallel: one of them
// stops the broker.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// testTopologyConfig returns the default configuration pointed at the test
// broker, with exchange and queue names of the test's own.
func testTopologyConfig(tb testing.TB, r *testRabbit) config {
	tb.Helper()
	cfg, err := loadConfig(getenvFrom(nil))
	if err != nil {
		tb.Fatal(err)
	}
	var b [3]byte
	rand.Read(b[:])
	prefix := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(tb.Name(), "-")) + "-" + hex.EncodeToString(b[:])
	cfg.RabbitMQHost, cfg.RabbitMQPort = "127.0.0.1", r.amqpPort
	cfg.Exchange, cfg.DeadLetterExchange = prefix+".x", prefix+".dlx"
	cfg.Queue, cfg.DeadLetterQueue = prefix+".q", prefix+".dead"
	tb.Cleanup(func() { deleteTopology(r, cfg) })
	return cfg
}

// deleteTopology removes what a test declared, so the shared node stays
// small. It is best effort: a test that stopped the broker may leave it.
func deleteTopology(r *testRabbit, cfg config) {
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, q := range []string{cfg.Queue, cfg.DeadLetterQueue} {
		ch.QueueDelete(q,
			false, // ifUnused
			false, // ifEmpty
			false, // noWait
		)
	}
	for _, x := range []string{cfg.Exchange, cfg.DeadLetterExchange} {
		ch.ExchangeDelete(x,
			false, // ifUnused
			false, // noWait
		)
	}
}

// runningConsumer is a consumer running in the background.
type runningConsumer struct {
	*consumer
	store   *Store
	metrics *metrics
	cancel  context.CancelFunc
	done    chan error
}

// startConsumer runs a consumer for cfg until the test ends (or stop).
func startConsumer(tb testing.TB, cfg config) *runningConsumer {
	tb.Helper()
	store := NewStore(cfg.StoreCapacity)
	m := newMetrics(store)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConsumer{
		consumer: newConsumer(cfg, "service02-test", store, m, logger),
		store:    store, metrics: m, cancel: cancel, done: make(chan error, 1),
	}
	go func() { rc.done <- rc.Run(ctx) }()
	tb.Cleanup(func() { rc.stop(tb) })
	return rc
}

// stop shuts the consumer down and returns what Run returned.
func (rc *runningConsumer) stop(tb testing.TB) error {
	tb.Helper()
	rc.cancel()
	select {
	case err := <-rc.done:
		rc.done <- err // a second stop gets the same answer
		return err
	case <-time.After(30 * time.Second):
		tb.Fatal("the consumer did not stop within 30s of its context being cancelled")
		return nil
	}
}

// waitReady waits until the consumer is consuming.
func (rc *runningConsumer) waitReady(tb testing.TB) {
	tb.Helper()
	waitFor(tb, 60*time.Second, "the consumer to be ready", func() bool { return rc.Ready() == nil })
}

// waitFor polls cond until it holds, and fails the test at the deadline.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// metricValue reads a counter or gauge without labels from m.
func metricValue(tb testing.TB, m *metrics, name string) float64 {
	tb.Helper()
	families, err := m.registry.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		metric := f.GetMetric()[0]
		if c := metric.GetCounter(); c != nil {
			return c.GetValue()
		}
		return metric.GetGauge().GetValue()
	}
	tb.Fatalf("no metric %s", name)
	return 0
}

// testPublisher publishes with confirms, as service01 does.
type testPublisher struct {
	tb      testing.TB
	cfg     config
	ch      *amqp.Channel
	returns chan amqp.Return // unroutable messages, sent back before their confirm
}

func newTestPublisher(tb testing.TB, r *testRabbit, cfg config) *testPublisher {
	tb.Helper()
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	if err := ch.Confirm(false /* noWait */); err != nil {
		tb.Fatal(err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	return &testPublisher{tb: tb, cfg: cfg, ch: ch, returns: returns}
}

// publish sends body to the test's exchange and waits for the confirm.
func (p *testPublisher) publish(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	confirm, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, p.cfg.RoutingKey,
		true,  // mandatory: fail rather than drop when no queue is bound
		false, // immediate
		amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
	if err != nil {
		return err
	}
	ok, err := confirm.WaitContext(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the broker nacked the message")
	}
	select {
	case ret := <-p.returns:
		return fmt.Errorf("unroutable: %s", ret.ReplyText)
	default:
		return nil
	}
}

func (p *testPublisher) mustPublish(body []byte) {
	p.tb.Helper()
	if err := p.publish(body); err != nil {
		p.tb.Fatalf("publish: %v", err)
	}
}

// validBody returns a valid message body with the given id.
func validBody(id string) []byte {
	b, _ := json.Marshal(map[string]string{
		"id": id, "msg": "hello", "date": time.Now().UTC().Format(receivedAtLayout), "request_id": "test-" + id,
	})
	return b
}

// queueDepth returns the messages in queue, ready or not yet acknowledged,
// as rabbitmqctl reports them.
func queueDepth(tb testing.TB, r *testRabbit, queue string) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.Ctl(ctx, "list_queues", "--quiet", "--no-table-headers", "name", "messages")
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(out)) {
		if name, n, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && name == queue {
			depth, err := strconv.Atoi(n)
			if err != nil {
				tb.Fatalf("list_queues: %q", line)
			}
			return depth
		}
	}
	tb.Fatalf("list_queues does not list %s:\n%s", queue, out)
	return 0
}

// declareQueue declares a durable queue with args, as something other than
// service02 might have.
func declareQueue(ch *amqp.Channel, name string, args amqp.Table) error {
	_, err := ch.QueueDeclare(name,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		args,
	)
	return err
}

// getAll takes every message currently ready in queue.
func getAll(tb testing.TB, r *testRabbit, queue string) []amqp.Delivery {
	tb.Helper()
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatal(err)
	}
	var got []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true /* autoAck */)
		if err != nil {
			tb.Fatalf("basic.get: %v", err)
		}
		if !ok {
			return got
		}
		got = append(got, d)
	}
}

func TestConsumeStoresEveryMessageOnce(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)
	pub := newTestPublisher(t, r, cfg)

	const n = 50
	for i := range n {
		pub.mustPublish(validBody(fmt.Sprintf("once-%d", i)))
	}
	waitFor(t, 30*time.Second, "50 messages in the store", func() bool { return rc.store.Len() == n })
	for i := range n {
		id := fmt.Sprintf("once-%d", i)
		if m, ok := rc.store.Get(id); !ok || m.RequestID != "test-"+id {
			t.Errorf("Get(%s) = %+v, %v", id, m, ok)
		}
	}
	if got := metricValue(t, rc.metrics, "service02_messages_consumed_total"); got != n {
		t.Errorf("consumed_total = %v, want %d", got, n)
	}
	if got := metricValue(t, rc.metrics, "service02_connected"); got != 1 {
		t.Errorf("connected = %v, want 1", got)
	}
	waitFor(t, 30*time.Second, "the queue to be empty (every message acked)", func() bool {
		return queueDepth(t, r, cfg.Queue) == 0
	})
}

func TestConsumeDuplicateIDStoredOnceBothAcked(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)
	pub := newTestPublisher(t, r, cfg)

	pub.mustPublish(validBody("twice"))
	pub.mustPublish(validBody("twice"))
	waitFor(t, 30*time.Second, "the duplicate to be counted", func() bool {
		return metricValue(t, rc.metrics, "service02_messages_duplicate_total") == 1
	})
	if rc.store.Len() != 1 {
		t.Errorf("store holds %d messages, want 1", rc.store.Len())
	}
	if got := metricValue(t, rc.metrics, "service02_messages_consumed_total"); got != 1 {
		t.Errorf("consumed_total = %v, want 1", got)
	}
	// messages counts the unacknowledged too: 0 means both were acked.
	waitFor(t, 30*time.Second, "the queue to be empty (both copies acked)", func() bool {
		return queueDepth(t, r, cfg.Queue) == 0
	})
}

func TestConsumeDeadLettersPoison(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)
	pub := newTestPublisher(t, r, cfg)

	poison := map[string][]byte{
		"not JSON":          []byte("hello, world"),
		"missing fields":    []byte(`{"msg":"no id, no date"}`),
		"wrong types":       []byte(`{"id":42,"msg":["a"],"date":true}`),
		"bad date":          []byte(`{"id":"bad-date","msg":"m","date":"tomorrow"}`),
		"1 MiB":             []byte(`{"id":"big","msg":"` + strings.Repeat("x", 1<<20) + `","date":"2026-11-22T09:15:02Z"}`),
		"JSON null":         []byte("null"),
		"empty body":        nil,
		"invalid UTF-8 key": []byte("{\"\xff\":1}"),
	}
	for _, body := range poison {
		pub.mustPublish(body)
	}
	for i := range 3 { // valid messages after the poison still get through
		pub.mustPublish(validBody(fmt.Sprintf("after-poison-%d", i)))
	}

	waitFor(t, 30*time.Second, "the valid messages in the store", func() bool { return rc.store.Len() == 3 })
	waitFor(t, 30*time.Second, "every poison message dead-lettered", func() bool {
		return metricValue(t, rc.metrics, "service02_messages_dead_lettered_total") == float64(len(poison))
	})
	var dead []amqp.Delivery
	waitFor(t, 30*time.Second, "the poison messages in the dead-letter queue", func() bool {
		dead = append(dead, getAll(t, r, cfg.DeadLetterQueue)...)
		return len(dead) >= len(poison)
	})
	want := make(map[string]bool)
	for _, body := range poison {
		want[string(body)] = true
	}
	for _, d := range dead {
		if !want[string(d.Body)] {
			t.Errorf("unexpected body in the dead-letter queue: %q", truncate(string(d.Body), 60))
		}
		delete(want, string(d.Body))
	}
	if len(want) != 0 {
		t.Errorf("%d poison messages missing from the dead-letter queue", len(want))
	}
	if rc.Ready() != nil {
		t.Errorf("not ready after poison: %v", rc.Ready())
	}
}

func TestConsumeSurvivesBrokerRestart(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)
	newTestPublisher(t, r, cfg).mustPublish(validBody("before-restart"))
	waitFor(t, 30*time.Second, "the first message", func() bool { _, ok := rc.store.Get("before-restart"); return ok })

	r.Halt(false)
	halted := true
	t.Cleanup(func() { // the other tests need the broker
		if halted {
			r.Start()
		}
	})
	waitFor(t, 30*time.Second, "the consumer to notice the broker is gone", func() bool { return rc.Ready() != nil })
	if got := metricValue(t, rc.metrics, "service02_connected"); got != 0 {
		t.Errorf("connected = %v while the broker is down, want 0", got)
	}
	if reason := rc.Ready().Error(); !strings.Contains(reason, "RabbitMQ at "+cfg.BrokerAddr()) {
		t.Errorf("readiness reason %q does not name the broker", reason)
	}

	if err := r.Start(); err != nil {
		t.Fatalf("restart the broker: %v", err)
	}
	halted = false
	rc.waitReady(t)
	newTestPublisher(t, r, cfg).mustPublish(validBody("after-restart"))
	waitFor(t, 30*time.Second, "a message published after the restart", func() bool {
		_, ok := rc.store.Get("after-restart")
		return ok
	})
	if rc.store.Len() != 2 {
		t.Errorf("store holds %d messages, want 2", rc.store.Len())
	}
}

func TestConsumeRedeclaresDeletedQueue(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)

	// Deleting the queue cancels the consumer (basic.cancel from the broker)
	// but leaves its channel open.
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(cfg.Queue,
		false, // ifUnused
		false, // ifEmpty
		false, // noWait
	); err != nil {
		t.Fatalf("queue.delete: %v", err)
	}
	waitFor(t, 30*time.Second, "the consumer to declare the queue again", func() bool {
		probe, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		defer probe.Close()
		// A queue that does not exist is a 404, which closes the probe.
		_, err = probe.QueueDeclarePassive(cfg.Queue,
			true,  // durable
			false, // autoDelete
			false, // exclusive
			false, // noWait
			nil,
		)
		return err == nil
	})
	rc.waitReady(t)
	newTestPublisher(t, r, cfg).mustPublish(validBody("after-delete"))
	waitFor(t, 30*time.Second, "a message published to the new queue", func() bool {
		_, ok := rc.store.Get("after-delete")
		return ok
	})
}

func TestConsumeShutdownUnderLoadLosesNothing(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	cfg.StoreCapacity = 1_000_000
	rc := startConsumer(t, cfg)
	rc.waitReady(t)

	// Publish without pause, from several channels, until told to stop.
	var mu sync.Mutex
	var confirmed []string
	stopPublishing := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 4 {
		pub := newTestPublisher(t, r, cfg)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopPublishing:
					return
				default:
				}
				id := fmt.Sprintf("load-%d-%d", p, i)
				if err := pub.publish(validBody(id)); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				confirmed = append(confirmed, id)
				mu.Unlock()
			}
		})
	}
	waitFor(t, 30*time.Second, "messages flowing", func() bool { return rc.store.Len() >= 200 })

	// Shut the consumer down while messages keep coming.
	if err := rc.stop(t); err != nil {
		t.Fatalf("Run returned %v after a shutdown, want nil", err)
	}
	close(stopPublishing)
	wg.Wait()

	// Every confirmed message is either stored or back in the queue. A
	// message returned to the queue when the channel closed may take a
	// moment to be ready again, hence the polling.
	stored := make(map[string]bool)
	msgs, _, _ := rc.store.Page(0, cfg.StoreCapacity)
	for _, m := range msgs {
		stored[m.ID] = true
	}
	queued := make(map[string]int)
	missing := func() []string {
		for _, d := range getAll(t, r, cfg.Queue) {
			var m struct{ ID string }
			json.Unmarshal(d.Body, &m)
			queued[m.ID]++
		}
		var missing []string
		for _, id := range confirmed {
			if !stored[id] && queued[id] == 0 {
				missing = append(missing, id)
			}
		}
		return missing
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for lost := missing(); len(lost) > 0; lost = missing() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d confirmed messages neither stored nor in the queue, e.g. %v", len(lost), len(confirmed), lost[:min(5, len(lost))])
		}
		<-tick.C
	}
	// And a stored message was acked: it did not go back to the queue.
	for id, n := range queued {
		if stored[id] {
			t.Errorf("message %s is both stored and back in the queue: its ack was lost", id)
		}
		if n > 1 {
			t.Errorf("message %s is %d times in the queue", id, n)
		}
	}
	t.Logf("%d confirmed: %d stored, %d left in the queue", len(confirmed), len(stored), len(queued))
	if len(queued) == 0 {
		t.Log("no message was left in the queue: the shutdown raced nothing this time")
	}
}

func TestConsumeTopologyMismatch(t *testing.T) {
	r := mustRabbit(t)
	tests := []struct {
		name      string
		queueType string // RABBITMQ_QUEUE_TYPE
		existing  func(ch *amqp.Channel, cfg config) error
		want      []string // {queue} and {exchange} stand for the test's names
	}{
		{"queue type", "classic", func(ch *amqp.Channel, cfg config) error {
			// What the default configuration declared earlier.
			return declareQueue(ch, cfg.Queue, amqp.Table{
				"x-queue-type": "quorum", "x-dead-letter-exchange": cfg.DeadLetterExchange, "x-delivery-limit": int64(5)})
		}, []string{`queue "{queue}" already exists with other arguments (inequivalent arg 'x-queue-type' for queue '{queue}'`,
			"received 'classic' but current is 'quorum'): delete it in the management UI (Queues > {queue} > Delete) or set RABBITMQ_QUEUE_TYPE to match"}},
		{"delivery limit", "quorum", func(ch *amqp.Channel, cfg config) error {
			return declareQueue(ch, cfg.Queue, amqp.Table{
				"x-queue-type": "quorum", "x-dead-letter-exchange": cfg.DeadLetterExchange, "x-delivery-limit": int64(10)})
		}, []string{`queue "{queue}" already exists`, "'x-delivery-limit'", "or set RABBITMQ_DELIVERY_LIMIT to match"}},
		{"exchange type", "quorum", func(ch *amqp.Channel, cfg config) error {
			return ch.ExchangeDeclare(cfg.Exchange, "direct",
				true,  // durable
				false, // autoDelete
				false, // internal
				false, // noWait
				nil,
			)
		}, []string{`exchange "{exchange}" already exists with other arguments (inequivalent arg 'type'`,
			"(Exchanges > {exchange} > Delete) or set RABBITMQ_EXCHANGE to another name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testTopologyConfig(t, r)
			cfg.QueueType = tt.queueType
			conn, err := amqp.Dial(r.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.existing(ch, cfg); err != nil {
				t.Fatalf("declare the existing object: %v", err)
			}

			rc := startConsumer(t, cfg)
			var runErr error
			select {
			case runErr = <-rc.done:
				rc.done <- runErr // for the cleanup's stop
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not give up on a topology mismatch")
			}
			if runErr == nil {
				t.Fatal("Run returned nil, want the mismatch")
			}
			for _, want := range tt.want {
				want = strings.NewReplacer("{queue}", cfg.Queue, "{exchange}", cfg.Exchange).Replace(want)
				if !strings.Contains(runErr.Error(), want) {
					t.Errorf("error %q\ndoes not contain %q", runErr, want)
				}
			}
			if rc.Ready() == nil {
				t.Error("Ready() = nil after a mismatch")
			}
		})
	}
}
