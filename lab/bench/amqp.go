package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The lab's default topology, which the services declare at start.
const (
	exchange   = "pings"
	routingKey = "ping.created"
	queue      = "pings"
)

// benchMsg is the msg every benchmark request carries.
const benchMsg = "bench"

// dateLayout is service01's date format (docs/reference).
const dateLayout = "2006-01-02T15:04:05.000000Z"

// newPublishing is a message as service01 publishes it: the same JSON body
// and properties, so the broker and service02 do the same work for it.
func newPublishing(now time.Time) amqp.Publishing {
	var b [32]byte
	rand.Read(b[:])
	id := uuid(b[:16])
	requestID := hex.EncodeToString(b[16:])
	body, _ := json.Marshal(map[string]string{
		"id": id, "msg": benchMsg, "date": now.UTC().Format(dateLayout), "request_id": requestID,
	})
	return amqp.Publishing{
		ContentType:   "application/json",
		DeliveryMode:  amqp.Persistent,
		MessageId:     id,
		Timestamp:     now,
		CorrelationId: requestID,
		AppId:         "bench",
		Type:          "ping.created",
		Body:          body,
	}
}

// uuid formats 16 random bytes as a version 4 UUID.
func uuid(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// publisher is R's Go publisher: one connection, a pool of confirm-mode
// channels, one message in flight per channel, each publish waiting for its
// confirm, which is what service01 does for every POST /ping.
type publisher struct {
	conn     *amqp.Connection
	channels chan *amqp.Channel
}

func newPublisher(url string, channels int) (*publisher, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench publisher"}})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	chs, err := openConfirmChannels(conn, channels)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &publisher{conn: conn, channels: make(chan *amqp.Channel, channels)}
	for _, ch := range chs {
		p.channels <- ch
	}
	// A channel's first publish to a quorum queue registers it with the
	// queue through the Raft log, a slow one-off that service01's channels
	// paid long before: pay it here, outside the measurement.
	for range channels {
		if err := p.publish(context.Background()); err != nil {
			conn.Close()
			return nil, fmt.Errorf("warming up: %w", err)
		}
	}
	return p, nil
}

// publish sends one persistent message and waits for the broker's confirm.
func (p *publisher) publish(ctx context.Context) error {
	var ch *amqp.Channel
	select {
	case ch = <-p.channels:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { p.channels <- ch }()
	return publishConfirmed(ctx, ch)
}

// openConfirmChannels opens n channels on conn, each in confirm mode.
func openConfirmChannels(conn *amqp.Connection, n int) ([]*amqp.Channel, error) {
	var chs []*amqp.Channel
	for range n {
		ch, err := conn.Channel()
		if err != nil {
			return nil, fmt.Errorf("channel.open: %w", err)
		}
		if err := ch.Confirm(false /* noWait */); err != nil {
			return nil, fmt.Errorf("confirm.select: %w", err)
		}
		chs = append(chs, ch)
	}
	return chs, nil
}

// publishConfirmed sends one persistent message on ch, a channel in confirm
// mode, and waits for the broker's confirm of it.
func publishConfirmed(ctx context.Context, ch *amqp.Channel) error {
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, routingKey,
		true,  // mandatory, as service01
		false, // immediate: not supported by RabbitMQ
		newPublishing(time.Now()))
	if err != nil {
		return fmt.Errorf("basic.publish: %w", err)
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("waiting for the confirm: %w", err)
	}
	if !acked {
		return errors.New("the broker nacked the message")
	}
	return nil
}

func (p *publisher) close() { p.conn.Close() }

// pipelinedChannels is how many confirm-mode channels the pipelined
// publisher's clients share. On a 2-core machine (quorum queue, 64
// publishers, two rounds each) 2 shared channels did best: 1.3 to 1.6
// times one channel per publisher, and 8 shared channels no better than 2.
const pipelinedChannels = 2

// pipelinedPublisher is R's best bare form: the clients share a few
// channels, so each channel carries many messages awaiting their confirms
// and the broker confirms them in batches (basic.ack with multiple=true),
// while each client still waits for its own message's confirm.
type pipelinedPublisher struct {
	conn     *amqp.Connection
	channels []*amqp.Channel
}

func newPipelinedPublisher(url string, channels int) (*pipelinedPublisher, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench pipelined publisher"}})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	chs, err := openConfirmChannels(conn, channels)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &pipelinedPublisher{conn: conn, channels: chs}
	for i := range channels { // each channel's slow first publish, as newPublisher's
		if err := p.publish(context.Background(), i); err != nil {
			conn.Close()
			return nil, fmt.Errorf("warming up: %w", err)
		}
	}
	return p, nil
}

// publish sends one persistent message on client's shared channel and
// waits for its confirm. amqp091-go serialises publishes on a channel and
// hands each its own DeferredConfirmation, resolved by its delivery tag.
func (p *pipelinedPublisher) publish(ctx context.Context, client int) error {
	return publishConfirmed(ctx, p.channels[client%len(p.channels)])
}

func (p *pipelinedPublisher) close() { p.conn.Close() }

// fill publishes n messages as fast as the broker takes them, to build a
// backlog: a few channels, each with a window of unconfirmed messages.
func fill(ctx context.Context, url string, n int) error {
	return fillTo(ctx, url, exchange, routingKey, n)
}

// fillTo publishes n messages to the exchange with the routing key, with
// confirms, on a few channels at once. With the default exchange ("") and
// a stream's name as the key, they go to that stream alone.
func fillTo(ctx context.Context, url, exchange, routingKey string, n int) error {
	const workers, window = 4, 500
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench fill"}})
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		share := n / workers
		if w == 0 {
			share += n % workers
		}
		wg.Go(func() {
			if err := fillChannel(ctx, conn, exchange, routingKey, share, window); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func fillChannel(ctx context.Context, conn *amqp.Connection, exchange, routingKey string, n, window int) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel.open: %w", err)
	}
	defer ch.Close()
	if err := ch.Confirm(false /* noWait */); err != nil {
		return fmt.Errorf("confirm.select: %w", err)
	}
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	for sent := 0; sent < n; {
		pending = pending[:0]
		for ; sent < n && len(pending) < window; sent++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, routingKey,
				true,  // mandatory
				false, // immediate
				newPublishing(time.Now()))
			if err != nil {
				return fmt.Errorf("basic.publish: %w", err)
			}
			pending = append(pending, dc)
		}
		for _, dc := range pending {
			if acked, err := dc.WaitContext(ctx); err != nil || !acked {
				return fmt.Errorf("filling the queue: a message was not confirmed (%v)", err)
			}
		}
	}
	return nil
}

// drainRaw consumes n messages from the queue as a bare Go consumer would:
// the same prefetch as service02, one ack per message, and no other work. It
// returns the time from the first delivery to the last ack.
func drainRaw(ctx context.Context, url string, n, prefetch int) (time.Duration, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{Properties: amqp.Table{"connection_name": "bench raw consumer"}})
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("channel.open: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false /* global */); err != nil {
		return 0, fmt.Errorf("basic.qos: %w", err)
	}
	deliveries, err := ch.Consume(queue, "bench-raw",
		false, // autoAck: ack each message, as service02
		false, // exclusive
		false, // noLocal
		false, // noWait
		nil)
	if err != nil {
		return 0, fmt.Errorf("basic.consume: %w", err)
	}
	var first time.Time
	for got := 0; got < n; got++ {
		select {
		case d, ok := <-deliveries:
			if !ok {
				return 0, fmt.Errorf("the deliveries stopped after %d of %d messages", got, n)
			}
			if got == 0 {
				first = time.Now()
			}
			if err := d.Ack(false /* multiple */); err != nil {
				return 0, fmt.Errorf("basic.ack: %w", err)
			}
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	elapsed := time.Since(first)
	if err := ch.Cancel("bench-raw", false /* noWait */); err != nil {
		return 0, fmt.Errorf("basic.cancel: %w", err)
	}
	return elapsed, nil
}
