package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file is the hardening around the lesson in consumer.go: staying
// connected (reconnect with backoff, readiness) and dialling.

const (
	// dialTimeout bounds the TCP connect and then the AMQP handshake.
	dialTimeout = 5 * time.Second
	// closeTimeout bounds the goodbye to the broker at shutdown.
	closeTimeout = 5 * time.Second
)

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
