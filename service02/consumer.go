package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// consumer moves messages from the queue into the store.
type consumer struct {
	broker   RabbitMQConfig // holds the password: log RabbitMQAddr only
	dialer   dialer         // connects to one of the broker's nodes
	prefetch int
	replay   bool // replay the event log before consuming the queue
	tag      string
	store    *Store
	metrics  *metrics
	logger   *slog.Logger

	mu       sync.Mutex
	notReady error // why the consumer is not consuming; nil while it is
}

func newConsumer(cfg config, tag string, store *Store, m *metrics, logger *slog.Logger) *consumer {
	return &consumer{
		broker:   cfg.RabbitMQConfig,
		dialer:   dialer{cfg: cfg.RabbitMQConfig},
		prefetch: cfg.Prefetch,
		replay:   cfg.Replay,
		tag:      tag,
		store:    store,
		metrics:  m,
		logger:   logger,
		notReady: fmt.Errorf("not connected to RabbitMQ at %s yet; connecting", cfg.RabbitMQAddr()),
	}
}

// session connects, declares the topology and consumes until the connection
// or channel is lost (it returns why) or ctx is done (it shuts down in order
// and returns nil). consumed reports whether it got as far as consuming.
func (c *consumer) session(ctx context.Context) (consumed bool, err error) {
	conn, addr, err := c.dialer.dial(ctx)
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

	if err := declareTopology(ch, c.broker); err != nil {
		return false, err
	}
	if c.replay {
		// Once per process: after a reconnect the store still holds
		// what it held, and the queue redelivers what was not acked.
		if err := c.replayLog(ctx, conn); err != nil {
			return false, err
		}
		c.replay = false
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
		c.broker.Queue,
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
	c.logger.Info("consuming", "broker", addr, "queue", c.broker.Queue, "consumer_tag", c.tag, "prefetch", c.prefetch)

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

// handle is the lesson of service02, for one delivery: validate, store,
// then acknowledge; an invalid message is rejected to the dead-letter
// exchange instead. Nothing it receives can stop the consumer: every outcome
// is an ack (now or in the next batch) or a reject.
func (c *consumer) handle(d amqp.Delivery, acks *acker) {
	if d.Redelivered {
		// The broker delivered this message before, to a consumer that
		// did not acknowledge it (it died, or its channel closed).
		c.metrics.redelivered.Inc()
	}
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
	// it already, and left unacked it would only come back. acks.ack is
	// d.Ack(false) sent in batches (acker.go).
	acks.ack(d.DeliveryTag)
}
