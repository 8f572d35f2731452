package main

// Integration tests: the consumer against the real RabbitMQ node of
// rabbitmq_test.go. They share the node, so each declares its own exchanges
// and queues (named after the test), and none runs in parallel: one of them
// stops the broker. At the end, unit tests of the batching of acks, with a
// fake channel that records what would go on the wire.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
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
	cfg, err := parseConfig(getenvFrom(nil))
	if err != nil {
		tb.Fatal(err)
	}
	var b [3]byte
	rand.Read(b[:])
	prefix := strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]+`).ReplaceAllString(tb.Name(), "-")) + "-" + hex.EncodeToString(b[:])
	cfg.RabbitMQHost, cfg.RabbitMQPort = "127.0.0.1", r.amqpPort
	cfg.Exchange, cfg.DeadLetterExchange = prefix+".x", prefix+".dlx"
	cfg.Queue, cfg.DeadLetterQueue = prefix+".q", prefix+".dead"
	cfg.LogStream = prefix + ".log"
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
	for _, q := range []string{cfg.Queue, cfg.DeadLetterQueue, cfg.LogStream} {
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

// mustChannel opens a connection to r and a channel on it, for a test's own
// declarations and reads; the returned function closes them.
func mustChannel(tb testing.TB, r *testRabbit) (*amqp.Channel, func()) {
	tb.Helper()
	conn, err := amqp.Dial(r.URL())
	if err != nil {
		tb.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		tb.Fatal(err)
	}
	return ch, func() { conn.Close() }
}

// mustDeclareTopology declares cfg's exchanges and queues as service02
// does, so that a test can fill the queue before any consumer starts.
func mustDeclareTopology(tb testing.TB, r *testRabbit, cfg config) {
	tb.Helper()
	ch, closeCh := mustChannel(tb, r)
	defer closeCh()
	if err := declareTopology(ch, cfg.RabbitMQConfig); err != nil {
		tb.Fatal(err)
	}
}

// connectionPids returns the broker's ids (Erlang pids) of the connections
// whose client properties mention name, as service02's connection name.
func connectionPids(tb testing.TB, r *testRabbit, name string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.Ctl(ctx, "list_connections", "--quiet", "--no-table-headers", "pid", "client_properties")
	if err != nil {
		tb.Fatal(err)
	}
	var pids []string
	for line := range strings.Lines(string(out)) {
		if pid, props, ok := strings.Cut(strings.TrimSpace(line), "\t"); ok && strings.Contains(props, `"`+name+`"`) {
			pids = append(pids, pid)
		}
	}
	return pids
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
	return p.publishAll([][]byte{body})
}

// publishAll sends every body without waiting in between, then waits for
// all the confirms: a burst that arrives faster than one message per round
// trip.
func (p *testPublisher) publishAll(bodies [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(bodies))
	for _, body := range bodies {
		confirm, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, p.cfg.RoutingKey,
			true,  // mandatory: fail rather than drop when no queue is bound
			false, // immediate
			amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body})
		if err != nil {
			return err
		}
		confirms = append(confirms, confirm)
	}
	for _, confirm := range confirms {
		ok, err := confirm.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("the broker nacked the message")
		}
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

func (p *testPublisher) mustPublishAll(bodies [][]byte) {
	p.tb.Helper()
	if err := p.publishAll(bodies); err != nil {
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

// queueDepth returns the messages in queue, ready or delivered but not yet
// acknowledged.
//
// It does not use rabbitmqctl list_queues, whose counts for a quorum queue
// are those of the queue's last periodic report, seconds old: a queue just
// filled still shows 0 there. The ready messages are counted by a passive
// queue.declare, which asks the queue itself; the unacknowledged ones by
// the channels that hold them, summed over every channel of the node (the
// tests do not run in parallel, and each consumes only its own queue). Ready
// is read first, so a message that moves from ready to unacked in between
// is counted twice rather than missed.
func queueDepth(tb testing.TB, r *testRabbit, queue string) int {
	tb.Helper()
	ch, closeCh := mustChannel(tb, r)
	defer closeCh()
	q, err := ch.QueueDeclarePassive(queue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		nil,
	)
	if err != nil {
		tb.Fatalf("queue.declare (passive): %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.Ctl(ctx, "list_channels", "--quiet", "--no-table-headers", "messages_unacknowledged")
	if err != nil {
		tb.Fatal(err)
	}
	unacked := 0
	for line := range strings.Lines(string(out)) {
		n, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			tb.Fatalf("list_channels: %q", line)
		}
		unacked += n
	}
	return q.Messages + unacked
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
	ch, closeCh := mustChannel(tb, r)
	defer closeCh()
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
	// The queue is filled before the consumer starts, so that the messages
	// arrive as one backlog and the invalid ones fall in the middle of
	// batches of acks.
	mustDeclareTopology(t, r, cfg)
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
	var bodies [][]byte
	valid := 0
	for _, body := range poison { // a valid message before each invalid one
		bodies = append(bodies, validBody(fmt.Sprintf("before-poison-%d", valid)), body)
		valid++
	}
	for i := range 3 { // valid messages after the poison still get through
		bodies = append(bodies, validBody(fmt.Sprintf("after-poison-%d", i)))
		valid++
	}
	pub.mustPublishAll(bodies)
	rc := startConsumer(t, cfg)

	waitFor(t, 30*time.Second, "the valid messages in the store", func() bool { return rc.store.Len() == valid })
	waitFor(t, 30*time.Second, "every poison message dead-lettered", func() bool {
		return metricValue(t, rc.metrics, "service02_messages_dead_lettered_total") == float64(len(poison))
	})
	// messages counts the unacknowledged too: 0 means every valid message
	// was acked and every invalid one left the queue.
	waitFor(t, 30*time.Second, "the queue to be empty", func() bool { return queueDepth(t, r, cfg.Queue) == 0 })
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

func TestConsumeBurstLeavesNothingUnacked(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)

	// One burst, published faster than one message per round trip, so that
	// deliveries queue up in front of the consumer and it acks them in
	// batches (half the prefetch at most, or whatever was stored when it
	// found nothing more waiting).
	// Not a multiple of the batch (100 with the default prefetch), so the
	// burst ends with a partial batch, which only the idle flush sends.
	const n = 1050
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = validBody(fmt.Sprintf("burst-%d", i))
	}
	newTestPublisher(t, r, cfg).mustPublishAll(bodies)
	waitFor(t, 30*time.Second, "every message in the store", func() bool { return rc.store.Len() == n })

	// While it runs, the consumer acks the end of the burst as soon as it
	// finds nothing more waiting: no stored message stays unacked.
	waitFor(t, 10*time.Second, "the queue to be empty while consuming (the last batch acked)", func() bool {
		return queueDepth(t, r, cfg.Queue) == 0
	})
	if err := rc.stop(t); err != nil {
		t.Fatalf("Run returned %v after a shutdown, want nil", err)
	}
	// A clean stop sends what is still pending before channel.close; a
	// delivery left unacked would be back in the queue now, or a moment
	// later.
	if depth := queueDepth(t, r, cfg.Queue); depth != 0 {
		t.Errorf("%d messages in the queue after the consumer stopped, want 0", depth)
	}
	for i := range n {
		if _, ok := rc.store.Get(fmt.Sprintf("burst-%d", i)); !ok {
			t.Errorf("burst-%d not stored", i)
		}
	}
	if got := metricValue(t, rc.metrics, "service02_messages_consumed_total"); got != n {
		t.Errorf("consumed_total = %v, want %d", got, n)
	}
	if got := metricValue(t, rc.metrics, "service02_messages_duplicate_total"); got != 0 {
		t.Errorf("duplicate_total = %v, want 0 (a message delivered twice)", got)
	}
}

func TestConsumeLoneMessageAckedAtOnce(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	rc := startConsumer(t, cfg)
	rc.waitReady(t)
	before := connectionPids(t, r, "service02")
	if len(before) != 1 {
		t.Fatalf("%d connections named service02, want 1", len(before))
	}

	pub := newTestPublisher(t, r, cfg)
	pub.mustPublish(validBody("lone"))
	waitFor(t, 30*time.Second, "the message in the store", func() bool { _, ok := rc.store.Get("lone"); return ok })
	// No other message comes, no timer runs, no shutdown: the ack goes out
	// because nothing else was waiting.
	waitFor(t, 10*time.Second, "the queue to be empty (the message acked)", func() bool {
		return queueDepth(t, r, cfg.Queue) == 0
	})

	// Now lose the connection abruptly: the broker closes it, so the
	// consumer gets no chance to send anything it may still hold back.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.Ctl(ctx, "close_connection", before[0], "test: connection lost"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the consumer to reconnect", func() bool {
		now := connectionPids(t, r, "service02")
		return len(now) == 1 && now[0] != before[0]
	})
	rc.waitReady(t)

	// Had the message been unacked, the broker would have put it back at
	// the head of the queue and delivered it again on the new connection,
	// where it is counted as a duplicate. A message published now comes
	// after it, so once that one is stored, the duplicate count tells.
	pub.mustPublish(validBody("after-close"))
	waitFor(t, 30*time.Second, "the message published after the close", func() bool {
		_, ok := rc.store.Get("after-close")
		return ok
	})
	if got := metricValue(t, rc.metrics, "service02_messages_duplicate_total"); got != 0 {
		t.Errorf("duplicate_total = %v, want 0: the message was delivered again, so it was not acked before the connection was lost", got)
	}
	if rc.store.Len() != 2 {
		t.Errorf("store holds %d messages, want 2", rc.store.Len())
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
	if reason := rc.Ready().Error(); !strings.Contains(reason, "RabbitMQ at "+cfg.RabbitMQAddr()) {
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
			ch, closeCh := mustChannel(t, r)
			defer closeCh()
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

// fakeChannel stands in for the AMQP channel in the acker's unit tests: it
// records the acks and nacks in the order they would go on the wire.
type fakeChannel struct {
	mu   sync.Mutex
	sent []string
	err  error // returned by every call when set
}

func (f *fakeChannel) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeChannel) Ack(tag uint64, multiple bool) error {
	return f.record("ack %d multiple=%v", tag, multiple)
}

func (f *fakeChannel) Nack(tag uint64, multiple, requeue bool) error {
	return f.record("nack %d multiple=%v requeue=%v", tag, multiple, requeue)
}

func (f *fakeChannel) Reject(tag uint64, requeue bool) error {
	return f.record("reject %d requeue=%v", tag, requeue)
}

func (f *fakeChannel) frames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

func TestAckBatch(t *testing.T) {
	for prefetch, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 200: 100, 65535: 32767} {
		if got := ackBatch(prefetch); got != want {
			t.Errorf("ackBatch(%d) = %d, want %d", prefetch, got, want)
		}
	}
}

func TestAcker(t *testing.T) {
	tests := []struct {
		name  string
		batch int
		steps []string // "stored N", "dead N" or "flush"
		want  []string
	}{
		{"nothing stored, nothing sent", 100, []string{"flush"}, nil},
		{"one ack for a run of stored messages", 100,
			[]string{"stored 1", "stored 2", "stored 3", "flush"},
			[]string{"ack 3 multiple=true"}},
		{"a second flush sends nothing", 100,
			[]string{"stored 1", "flush", "flush"},
			[]string{"ack 1 multiple=true"}},
		{"a full batch is sent without a flush", 2,
			[]string{"stored 1", "stored 2", "stored 3", "stored 4", "stored 5", "flush"},
			[]string{"ack 2 multiple=true", "ack 4 multiple=true", "ack 5 multiple=true"}},
		{"a batch of 1 acks every message", 1,
			[]string{"stored 1", "stored 2"},
			[]string{"ack 1 multiple=true", "ack 2 multiple=true"}},
		{"the stored messages are acked before an invalid one is nacked alone", 100,
			[]string{"stored 1", "stored 2", "dead 3", "stored 4", "flush"},
			[]string{"ack 2 multiple=true", "nack 3 multiple=false requeue=false", "ack 4 multiple=true"}},
		{"an invalid message with nothing pending", 100,
			[]string{"dead 1", "flush"},
			[]string{"nack 1 multiple=false requeue=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := &fakeChannel{}
			a := newAcker(ch, tt.batch, slog.New(slog.NewJSONHandler(io.Discard, nil)))
			for _, step := range tt.steps {
				op, arg, _ := strings.Cut(step, " ")
				tag, _ := strconv.ParseUint(arg, 10, 64)
				switch op {
				case "stored":
					a.ack(tag)
				case "dead":
					if err := a.deadLetter(tag); err != nil {
						t.Fatal(err)
					}
				case "flush":
					a.flush()
				}
			}
			if got := ch.frames(); !slices.Equal(got, tt.want) {
				t.Errorf("sent %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAckerFailedAckIsLoggedAndDropped(t *testing.T) {
	ch := &fakeChannel{err: amqp.ErrClosed}
	var logs bytes.Buffer
	a := newAcker(ch, 100, slog.New(slog.NewJSONHandler(&logs, nil)))
	a.ack(1)
	a.ack(2)
	a.flush()
	// The channel is gone: the broker requeues the messages by itself, so
	// a second flush must not try again.
	a.flush()
	if got, want := ch.frames(), []string{"ack 2 multiple=true"}; !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	for _, want := range []string{`"msg":"basic.ack failed; the messages will be redelivered"`, `"delivery_tag":2`, `"messages":2`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %s\ndoes not contain %s", logs.String(), want)
		}
	}
}

// consumeFake runs the consumer's loop over deliveries with a fake channel
// and the given batch, until the test cancels it.
func consumeFake(t *testing.T, deliveries chan amqp.Delivery, batch int) (*fakeChannel, *consumer, context.CancelFunc, chan bool) {
	t.Helper()
	store := NewStore(1000)
	c := &consumer{store: store, metrics: newMetrics(store), logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	ch := &fakeChannel{}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan bool, 1)
	go func() { stopped <- c.consume(ctx, deliveries, newAcker(ch, batch, c.logger)) }()
	t.Cleanup(func() { cancel(); <-stopped })
	return ch, c, cancel, stopped
}

func TestConsumeLoopAcksABacklogInBatches(t *testing.T) {
	tests := []struct {
		name   string
		batch  int
		bodies [][]byte // delivery tags 1, 2, ...
		want   []string
	}{
		{"a backlog in one ack", 100,
			[][]byte{validBody("a"), validBody("b"), validBody("c"), validBody("d")},
			[]string{"ack 4 multiple=true"}},
		{"a backlog larger than the batch", 2,
			[][]byte{validBody("a"), validBody("b"), validBody("c"), validBody("d"), validBody("e")},
			[]string{"ack 2 multiple=true", "ack 4 multiple=true", "ack 5 multiple=true"}},
		{"an invalid message in the middle", 100,
			[][]byte{validBody("a"), validBody("b"), []byte("not JSON"), validBody("c"), validBody("d")},
			[]string{"ack 2 multiple=true", "nack 3 multiple=false requeue=false", "ack 5 multiple=true"}},
		{"a duplicate is acked too", 100,
			[][]byte{validBody("a"), validBody("a")},
			[]string{"ack 2 multiple=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every delivery is waiting before the loop starts, as when
			// the broker pushes a backlog up to the prefetch.
			deliveries := make(chan amqp.Delivery, len(tt.bodies))
			for i, body := range tt.bodies {
				deliveries <- amqp.Delivery{DeliveryTag: uint64(i + 1), Body: body}
			}
			ch, _, _, _ := consumeFake(t, deliveries, tt.batch)
			waitFor(t, 10*time.Second, "the last frame", func() bool { return len(ch.frames()) == len(tt.want) })
			if got := ch.frames(); !slices.Equal(got, tt.want) {
				t.Errorf("sent %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestConsumeLoopAcksALoneMessageAtOnce(t *testing.T) {
	deliveries := make(chan amqp.Delivery) // nothing waits in it
	ch, c, _, _ := consumeFake(t, deliveries, 100)
	for tag := uint64(1); tag <= 3; tag++ {
		deliveries <- amqp.Delivery{DeliveryTag: tag, Body: validBody(fmt.Sprint("lone-", tag))}
		// No timer and no batch to fill: the ack follows the store.
		waitFor(t, 10*time.Second, fmt.Sprintf("the ack of delivery %d", tag), func() bool { return len(ch.frames()) == int(tag) })
	}
	if got, want := ch.frames(), []string{"ack 1 multiple=true", "ack 2 multiple=true", "ack 3 multiple=true"}; !slices.Equal(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
	if c.store.Len() != 3 {
		t.Errorf("store holds %d messages, want 3", c.store.Len())
	}
}

func TestConsumeLoopReturns(t *testing.T) {
	t.Run("deliveries closed: pending acks are left to the broker", func(t *testing.T) {
		// A lost channel closes the deliveries; the broker requeues what
		// was not acked, and an ack on the dead channel would only fail.
		deliveries := make(chan amqp.Delivery, 2)
		deliveries <- amqp.Delivery{DeliveryTag: 1, Body: validBody("a")}
		deliveries <- amqp.Delivery{DeliveryTag: 2, Body: validBody("b")}
		close(deliveries)
		ch, c, _, stopped := consumeFake(t, deliveries, 100)
		if <-stopped {
			t.Error("consume reported a shutdown, want the deliveries stopped")
		}
		stopped <- false // for the cleanup
		if got := ch.frames(); len(got) != 0 {
			t.Errorf("sent %q, want nothing", got)
		}
		if c.store.Len() != 2 {
			t.Errorf("store holds %d messages, want 2", c.store.Len())
		}
	})
	t.Run("context done: returns for the shutdown", func(t *testing.T) {
		_, _, cancel, stopped := consumeFake(t, make(chan amqp.Delivery), 100)
		cancel()
		select {
		case s := <-stopped:
			if !s {
				t.Error("consume reported the deliveries stopped, want a shutdown")
			}
			stopped <- s // for the cleanup
		case <-time.After(10 * time.Second):
			t.Fatal("consume did not return within 10s of its context being done")
		}
	})
}
