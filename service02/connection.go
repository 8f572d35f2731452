package main

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file is the hardening around the lesson in consumer.go: staying
// connected (reconnect with backoff, readiness); dial.go dials.

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
	var delay backoff
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
		c.setReady(fmt.Errorf("not connected to RabbitMQ at %s: %w; retrying", c.broker.RabbitMQAddr(), err))
		if consumed {
			delay.reset() // it worked a moment ago: try again soon
		}
		wait := delay.next()
		c.logger.Warn("RabbitMQ unavailable; will retry",
			"broker", c.broker.RabbitMQAddr(), "error", err.Error(), "retry_in_ms", wait.Milliseconds())
		if !sleep(ctx, wait) {
			c.setReady(errors.New("shutting down"))
			return nil
		}
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
