package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	// dialTimeout bounds the TCP connect and then the AMQP handshake.
	dialTimeout = 5 * time.Second
	// closeTimeout bounds the goodbye to the broker at shutdown.
	closeTimeout = 5 * time.Second
)

// consumer moves messages from the queue into the store.
type consumer struct {
	url      string // holds the password: never log it
	addr     string // the broker's host:port, for messages
	topo     topology
	prefetch int
	tag      string
	store    *Store
	metrics  *metrics
	logger   *slog.Logger

	mu       sync.Mutex
	notReady error // why the consumer is not consuming; nil while it is
}

func newConsumer(cfg config, tag string, store *Store, m *metrics, logger *slog.Logger) *consumer {
	return &consumer{
		url:      cfg.AMQPURL(),
		addr:     cfg.BrokerAddr(),
		topo:     cfg.topology(),
		prefetch: cfg.Prefetch,
		tag:      tag,
		store:    store,
		metrics:  m,
		logger:   logger,
		notReady: fmt.Errorf("not connected to RabbitMQ at %s yet; connecting", cfg.BrokerAddr()),
	}
}

// Ready is nil while the consumer is connected, has declared the topology and
// is consuming; otherwise it says why not.
func (c *consumer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.notReady
}

func (c *consumer) setReady(err error) {
	c.mu.Lock()
	c.notReady = err
	c.mu.Unlock()
	if err == nil {
		c.metrics.connected.Set(1)
	} else {
		c.metrics.connected.Set(0)
	}
}

// Run consumes until ctx is done, then stops in order (cancel the consumer,
// store and ack what was already delivered, close) and returns nil.
//
// Whenever the broker cannot be reached, or the connection or channel is
// lost, Run marks the consumer not ready and dials again, with exponential
// backoff and jitter, for as long as it takes; each new connection declares
// the topology, sets the prefetch and consumes again. amqp091-go has an
// automatic recovery of its own (Config.Recovery), but this loop also retries
// the first dial, never gives up, and drives readiness and the
// service02_connected metric, which is what a service needs.
//
// The only error Run returns is a *mismatchError: an exchange or queue exists
// with other arguments, which no retry can fix.
func (c *consumer) Run(ctx context.Context) error {
	delay := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		consumed, err := c.session(ctx)
		if ctx.Err() != nil {
			c.setReady(errors.New("shutting down"))
			return nil
		}
		if mismatch, ok := errors.AsType[*mismatchError](err); ok {
			c.setReady(mismatch)
			return mismatch
		}
		c.setReady(fmt.Errorf("not connected to RabbitMQ at %s: %w; retrying", c.addr, err))
		if consumed {
			delay.reset() // it worked a moment ago: try again soon
		}
		wait := delay.next()
		c.logger.Warn("RabbitMQ unavailable; will retry",
			"broker", c.addr, "error", err.Error(), "retry_in_ms", wait.Milliseconds())
		if !sleep(ctx, wait) {
			c.setReady(errors.New("shutting down"))
			return nil
		}
	}
}

// session connects, declares the topology and consumes until the connection
// or channel is lost (it returns why) or ctx is done (it shuts down in order
// and returns nil). consumed reports whether it got as far as consuming.
func (c *consumer) session(ctx context.Context) (consumed bool, err error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("service02") // shown in the management UI
	conn, err := amqp.DialConfig(c.url, amqp.Config{
		Properties: props,
		Dial:       dialContext(ctx, dialTimeout),
	})
	if err != nil {
		return false, err
	}
	defer func() {
		// For the error returns (shutdown closes it first; closing twice is
		// harmless). Bounded, in case the broker stopped answering.
		conn.CloseDeadline(time.Now().Add(closeTimeout))
	}()

	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("channel.open: %w", err)
	}
	// A lost connection closes its channels too, so this one notification
	// covers both. Buffered, so the library never waits on us; read below
	// once the deliveries stop.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))

	if err := c.topo.declare(ch); err != nil {
		return false, err
	}
	// The prefetch bounds the unacknowledged messages the broker pushes
	// ahead of the acks: enough to keep the consumer busy between round
	// trips, few enough that a crash redelivers little.
	if err := ch.Qos(
		c.prefetch,
		0,     // prefetchSize: no byte limit
		false, // global: per consumer
	); err != nil {
		return false, fmt.Errorf("basic.qos: %w", err)
	}
	deliveries, err := ch.Consume(
		c.topo.Queue,
		c.tag,
		false, // autoAck: ack messages once they are stored
		false, // exclusive
		false, // noLocal (not supported by RabbitMQ)
		false, // noWait
		nil,
	)
	if err != nil {
		return false, fmt.Errorf("basic.consume: %w", err)
	}
	c.setReady(nil)
	c.logger.Info("consuming", "broker", c.addr, "queue", c.topo.Queue, "consumer_tag", c.tag, "prefetch", c.prefetch)

	// Delivery tags count the deliveries of one channel, so every new
	// channel gets a new acker.
	acks := newAcker(ch, ackBatch(c.prefetch), c.logger)
	if !c.consume(ctx, deliveries, acks) {
		// The deliveries stopped. The acks still pending are moot: either
		// the connection or channel is gone, and the broker has put every
		// unacknowledged message back in the queue (the store drops them
		// when they come again), or the broker cancelled the consumer
		// because the queue was deleted, messages and all.
		return true, closeReason(closed)
	}
	c.shutdown(conn, ch, deliveries, acks)
	return true, nil
}

// consume handles deliveries until they stop (it returns false) or ctx is
// done (it returns true, with acks perhaps still pending for shutdown).
//
// It acknowledges stored messages in batches rather than one by one: under
// load, one basic.ack frame, and for a quorum queue one Raft "settle"
// command, then covers many messages. A batch is sent as soon as no further
// delivery is waiting, so at a low rate each message is acked the moment it
// is stored and nothing waits on a timer; under load, the acker also sends
// one whenever half the prefetch is pending.
func (c *consumer) consume(ctx context.Context, deliveries <-chan amqp.Delivery, acks *acker) (ctxDone bool) {
	for {
		var d amqp.Delivery
		var ok bool
		// First look without waiting. While messages keep coming this
		// takes the next one at once; ctx is checked here too, or a
		// steady stream could keep the consumer from ever shutting down.
		select {
		case d, ok = <-deliveries:
		case <-ctx.Done():
			return true
		default:
			// Nothing is waiting right now: acknowledge what is stored
			// before blocking. (amqp091-go may still be a moment away from
			// handing over a message it has; then the batch is only
			// smaller than it could have been.)
			acks.flush()
			select {
			case d, ok = <-deliveries:
			case <-ctx.Done():
				return true
			}
		}
		if !ok {
			return false
		}
		c.handle(d, acks)
	}
}

// closeReason says why the deliveries stopped.
func closeReason(closed <-chan *amqp.Error) error {
	select {
	case e, ok := <-closed:
		if ok && e != nil {
			return fmt.Errorf("connection or channel closed: %w", e)
		}
		return errors.New("channel closed")
	default:
		// The channel is open: the broker cancelled the consumer, which it
		// does when the queue is deleted. Reconnecting declares it again.
		return errors.New("the broker cancelled the consumer (was the queue deleted?)")
	}
}

// shutdown stops consuming without losing anything: after basic.cancel the
// broker sends no more messages, the ones already received are stored and
// acknowledged, and only then is the channel closed. A message received but
// not acknowledged when the channel closes goes back to the queue.
func (c *consumer) shutdown(conn *amqp.Connection, ch *amqp.Channel, deliveries <-chan amqp.Delivery, acks *acker) {
	c.setReady(errors.New("shutting down"))
	if err := ch.Cancel(c.tag, false /* noWait */); err != nil {
		c.logger.Warn("basic.cancel failed; unacknowledged messages go back to the queue", "error", err.Error())
	} else {
		// amqp091-go closes deliveries once it has handed over every
		// message that arrived before the broker's cancel-ok.
		drained := 0
		for d := range deliveries {
			c.handle(d, acks)
			drained++
		}
		c.logger.Info("consumer cancelled", "drained", drained)
	}
	// The pending acks go out before channel.close: closing the channel
	// with them unsent would put messages already stored back in the queue.
	// (When the cancel failed the channel is most likely gone, and the
	// flush only logs that.)
	acks.flush()
	if err := ch.Close(); err != nil {
		c.logger.Warn("channel.close failed", "error", err.Error())
	}
	if err := conn.CloseDeadline(time.Now().Add(closeTimeout)); err != nil {
		c.logger.Warn("connection.close failed", "error", err.Error())
	}
}

// handle stores or dead-letters one delivery. Nothing it receives can stop
// the consumer: every outcome is an ack (now or in the next batch) or a
// reject.
func (c *consumer) handle(d amqp.Delivery, acks *acker) {
	m, err := decodeMessage(d.Body)
	if err != nil {
		// Rejected without requeueing, the message goes to the queue's
		// dead-letter exchange, where someone can look at it, instead of
		// coming back forever.
		if err := acks.deadLetter(d.DeliveryTag); err != nil {
			c.logger.Warn("basic.nack failed; the message will be redelivered", "error", err.Error(), "message_id", d.MessageId)
			return
		}
		c.metrics.deadLettered.Inc()
		c.logger.Warn("invalid message dead-lettered",
			"reason", err.Error(), "message_id", d.MessageId, "correlation_id", d.CorrelationId,
			"bytes", len(d.Body), "delivery_tag", d.DeliveryTag)
		return
	}

	if c.store.Add(m) {
		c.metrics.consumed.Inc()
	} else {
		c.metrics.duplicates.Inc()
		c.logger.Debug("duplicate message not stored again", "message_id", m.ID, "redelivered", d.Redelivered)
	}
	// Ack after storing, never before: delivery is at-least-once. Were the
	// ack sent first, a crash between the two would lose the message; this
	// way a crash leaves it unacked and the broker delivers it again (the
	// store drops the duplicate). A duplicate is acked too: the store holds
	// it already, and left unacked it would only come back.
	acks.stored(d.DeliveryTag)
}

// ackBatch is how many stored messages may wait for their ack: half the
// prefetch, at least 1. The broker sends no more than the prefetch ahead of
// the acks; acking at half of it lets the broker refill the other half
// while the consumer works, so the window never fills up and stalls.
func ackBatch(prefetch int) int {
	return max(prefetch/2, 1)
}

// acker acknowledges stored deliveries in batches, with basic.ack
// multiple=true: one ack for tag N settles every delivery on the channel
// with a tag up to N that is still unacknowledged.
//
// That is safe only because the consumer handles its deliveries one at a
// time, in the order of their tags, on one goroutine: when the delivery
// with tag N is stored, every earlier one has been stored or dead-lettered
// already. With several workers, "up to N" could ack a message still being
// stored.
//
// An acker belongs to one channel (tags are per channel) and one goroutine.
type acker struct {
	ch     amqp.Acknowledger // the channel; a fake in unit tests
	batch  int               // flush when this many are pending
	logger *slog.Logger

	tag     uint64 // the highest tag stored but not yet acked
	pending int    // how many stored deliveries that ack will cover
}

func newAcker(ch amqp.Acknowledger, batch int, logger *slog.Logger) *acker {
	return &acker{ch: ch, batch: batch, logger: logger}
}

// stored records that the delivery with this tag is stored (or was found to
// be a duplicate), and flushes when the batch is full.
func (a *acker) stored(tag uint64) {
	a.tag = tag
	a.pending++
	if a.pending >= a.batch {
		a.flush()
	}
}

// flush acks every stored delivery not acked yet, in one basic.ack; it does
// nothing when none is pending.
func (a *acker) flush() {
	if a.pending == 0 {
		return
	}
	if err := a.ch.Ack(a.tag, true /* multiple */); err != nil {
		// Ack fails only when the channel is closed or the connection
		// broken, and then the broker puts the messages back in the queue
		// by itself: they come again and the store drops them. Retrying
		// would not help.
		a.logger.Warn("basic.ack failed; the messages will be redelivered",
			"error", err.Error(), "delivery_tag", a.tag, "messages", a.pending)
	}
	a.pending = 0
}

// deadLetter rejects the delivery with this tag alone, without requeueing,
// so that the broker dead-letters it.
//
// It flushes the pending acks first. Acking past a nacked tag later would be
// safe as well (a nacked delivery is no longer outstanding, so a multiple
// ack does not touch it), but this way the order on the wire is plain:
// everything before the invalid message is acked, then it is nacked.
func (a *acker) deadLetter(tag uint64) error {
	a.flush()
	return a.ch.Nack(tag,
		false, // multiple: this delivery only
		false, // requeue: dead-letter it instead
	)
}

// dialContext is amqp.DefaultDial that also gives up when ctx is done, so
// that a shutdown does not wait for a dial to a broker that does not answer.
func dialContext(ctx context.Context, timeout time.Duration) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Heartbeats have not started yet: bound the AMQP handshake. The
		// library clears the deadline once connected.
		if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// backoff computes exponentially growing delays with jitter, so that
// services restarting together do not retry in lockstep.
type backoff struct {
	initial, max, cur time.Duration
}

func newBackoff(initial, ceiling time.Duration) *backoff {
	return &backoff{initial: initial, max: ceiling, cur: initial}
}

// next returns a delay between half and all of the current step, then
// doubles the step, up to max.
func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.initial }

// sleep waits for d, or less when ctx is done first; it reports whether it
// waited the whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
