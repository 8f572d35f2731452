package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Connection timing.
const (
	minBackoff   = 100 * time.Millisecond // first wait before dialling again
	maxBackoff   = 5 * time.Second        // the wait doubles up to this
	dialTimeout  = 5 * time.Second        // the TCP connect, then the AMQP handshake
	closeTimeout = 5 * time.Second        // the connection.close handshake at shutdown
)

// dialer connects to the broker: to its one node, or to one of a cluster's
// nodes (RABBITMQ_ADDRESSES).
type dialer struct {
	cfg  RabbitMQConfig
	next int // the node to try first
}

// dial connects to the first node that answers, trying each node once,
// and returns the connection and the node's address. It starts with the
// node after the one it connected to last: a connection is most often lost
// because its node went down, and the other nodes of a cluster serve the
// same queues. It names the connection after the service (the name the
// management UI shows) and gives up when ctx is done.
func (d *dialer) dial(ctx context.Context) (*amqp.Connection, string, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("service02")
	addrs := d.cfg.RabbitMQAddrs()
	var failed []string
	for i := range addrs {
		n := (d.next + i) % len(addrs)
		conn, err := amqp.DialConfig(d.cfg.AMQPURL(addrs[n]), amqp.Config{
			Properties: props,
			Dial:       dialContext(ctx),
		})
		if err == nil {
			d.next = n + 1
			return conn, addrs[n], nil
		}
		if len(addrs) == 1 || ctx.Err() != nil {
			return nil, "", err
		}
		failed = append(failed, fmt.Sprintf("%s: %v", addrs[n], err))
	}
	return nil, "", errors.New("no node answered: " + strings.Join(failed, "; "))
}

// dialContext is amqp.DefaultDial that also gives up when ctx is done, so
// that a shutdown does not wait for a dial to a broker that does not answer.
func dialContext(ctx context.Context) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Heartbeats have not started yet: bound the AMQP handshake. The
		// library clears the deadline once connected.
		if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// backoff computes exponentially growing waits with jitter, so that
// services restarting together do not retry in lockstep.
type backoff struct {
	cur time.Duration
}

// next returns a wait between half and all of the current step, then
// doubles the step, up to maxBackoff.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = minBackoff
	}
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(2*b.cur, maxBackoff)
	return d
}

// reset starts the waits over from minBackoff.
func (b *backoff) reset() { b.cur = minBackoff }

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
