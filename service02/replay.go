package main

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// replayPrefetch is how many events of the log the broker sends ahead of the
// acks while service02 replays it. RabbitMQ requires a prefetch on a stream
// consumer; the acks only make room for more (a stream removes nothing).
// Larger than the queue's prefetch: a replay wants the log as fast as it can
// read it, and nothing is redelivered if service02 dies halfway.
const replayPrefetch = 1000

// replayLog is the lesson of the event log: it rebuilds the store from the
// stream before service02 consumes the queue, so that a service02 that
// restarts, even after kill -9, holds again every ping the log still
// retains.
//
//  1. Append a marker to the log (marker.go). AMQP 0-9-1 cannot ask a
//     stream where it ends, so service02 writes down where it ends now:
//     every event before the marker was in the log when the replay began.
//  2. Read the log from its first retained event ("x-stream-offset":
//     "first"), storing each valid ping. Reading removes nothing.
//  3. Stop at the marker. Every ping published since then is in the queue
//     as well, and the queue consumer stores it next; a ping in both is
//     stored once, since the store drops an id it holds.
func (c *consumer) replayLog(ctx context.Context, conn *amqp.Connection) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel.open: %w", err)
	}
	defer ch.Close() // also cancels the stream consumer
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))

	r := replay{stream: c.broker.LogStream, started: time.Now(), offset: -1}
	c.setReady(r.progress())
	marker, err := appendMarker(ctx, ch, c.broker.LogStream)
	if err != nil {
		return err
	}
	if err := ch.Qos(
		replayPrefetch,
		0,     // prefetchSize: no byte limit
		false, // global: per consumer
	); err != nil {
		return fmt.Errorf("basic.qos: %w", err)
	}
	events, err := ch.Consume(
		c.broker.LogStream,
		c.tag+"-replay",
		false, // autoAck: a stream consumer must ack, which grants credit
		false, // exclusive
		false, // noLocal
		false, // noWait
		amqp.Table{"x-stream-offset": "first"},
	)
	if err != nil {
		return fmt.Errorf("basic.consume: %w", err)
	}

	acks := newAcker(ch, ackBatch(replayPrefetch), c.logger)
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-events:
		case <-ctx.Done():
			return ctx.Err()
		default:
			acks.flush() // nothing waiting: make room for more
			select {
			case d, ok = <-events:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !ok {
			return closeReason(closed)
		}
		acks.ack(d.DeliveryTag)
		if d.Type == markerType {
			if d.MessageId == marker {
				c.logger.Info("event log replayed", r.summary()...)
				return nil
			}
			continue // another replay's marker: not an event
		}
		c.replayEvent(d, &r)
		if r.read%replayProgressEvery == 0 {
			c.setReady(r.progress())
		}
	}
}

// replayEvent stores one event of the log. An event that is not a valid
// ping is skipped: the queue dead-lettered it when it was new, but the log
// keeps everything, so the replay meets it every time. It is logged and
// counted, and never stops the replay.
func (c *consumer) replayEvent(d amqp.Delivery, r *replay) {
	r.read++
	r.offset = streamOffset(d)
	m, err := decodeMessage(d.Body)
	if err != nil {
		r.skipped++
		c.metrics.replaySkipped.Inc()
		c.logger.Warn("invalid event skipped on replay",
			"stream", r.stream, "offset", r.offset, "reason", err.Error(),
			"message_id", d.MessageId, "bytes", len(d.Body))
		return
	}
	if c.store.Add(m) {
		r.stored++
		c.metrics.replayed.Inc()
	} else {
		c.metrics.duplicates.Inc()
	}
}

// replayProgressEvery is how often, in events read, the readiness message
// shows the replay's progress.
const replayProgressEvery = 1000

// replay counts what one replay of the log did.
type replay struct {
	stream                string
	started               time.Time
	read, stored, skipped int
	offset                int64 // of the last event read; -1 before the first
}

// progress is the readiness error while the replay runs.
func (r *replay) progress() error {
	if r.read == 0 {
		return fmt.Errorf("replaying the event log %q: starting; ready once it reaches the end", r.stream)
	}
	return fmt.Errorf("replaying the event log %q: %d events read, up to offset %d; ready once it reaches the end",
		r.stream, r.read, r.offset)
}

func (r *replay) summary() []any {
	took := time.Since(r.started)
	return []any{
		"stream", r.stream, "events", r.read, "stored", r.stored, "skipped", r.skipped,
		"took_ms", took.Milliseconds(), "events_per_second", int(float64(r.read) / max(took.Seconds(), 1e-3)),
	}
}

// streamOffset is the event's offset in the stream, which RabbitMQ sends in
// the x-stream-offset header; -1 if it is missing.
func streamOffset(d amqp.Delivery) int64 {
	switch v := d.Headers["x-stream-offset"].(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	}
	return -1
}
