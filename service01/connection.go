package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file is the hardening around the lesson in confirm.go: staying
// connected (backoff, re-declaring the topology; dial.go dials), a few
// channels in confirm mode that many messages share, and knowing when the
// broker blocks publishers.

// Run connects to the broker, declares the topology and stays connected,
// re-dialling with exponential backoff and jitter whenever the connection
// fails, until ctx is done; then it closes the connection and returns nil.
// It returns an error only for what retrying cannot fix: a queue or
// exchange that exists with other settings (a *mismatchError).
//
// Stop the HTTP server before ctx is done, so that the requests in flight
// get their confirms before the connection closes.
func (p *amqpPublisher) Run(ctx context.Context) error {
	d := dialer{cfg: p.cfg.RabbitMQConfig}
	var delay backoff
	for {
		s, addr, err := p.connect(ctx, &d)
		if err != nil {
			if mismatch, ok := errors.AsType[*mismatchError](err); ok {
				p.setDown(mismatch)
				return mismatch
			}
			if ctx.Err() != nil {
				return nil
			}
			p.setDown(fmt.Errorf("not connected to RabbitMQ at %s: %w; retrying", p.cfg.RabbitMQAddr(), err))
			wait := delay.next()
			p.logger.Warn("cannot connect to RabbitMQ", slog.String("addr", p.cfg.RabbitMQAddr()),
				slog.Any("error", err), slog.Int64("retry_in_ms", wait.Milliseconds()))
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		}

		delay.reset()
		p.setUp(s)
		p.logger.Info("connected to RabbitMQ", slog.String("addr", addr))
		select {
		case <-ctx.Done():
			p.setDown(errors.New("service01 is shutting down"))
			if err := s.close(); err != nil {
				p.logger.Warn("closing the RabbitMQ connection", slog.Any("error", err))
			}
			p.logger.Info("closed the RabbitMQ connection")
			return nil
		case amqpErr := <-s.closed: // nil if the library closed it without an error
			why := fmt.Errorf("lost the connection to RabbitMQ at %s: %v; reconnecting", addr, amqpErr)
			p.setDown(why)
			p.logger.Warn("lost the connection to RabbitMQ", slog.String("addr", addr), slog.Any("error", amqpErr))
		}
	}
}

// connect dials the broker and declares the topology; addr is the node
// it connected to.
func (p *amqpPublisher) connect(ctx context.Context, d *dialer) (s *session, addr string, err error) {
	conn, addr, err := d.dial(ctx)
	if err != nil {
		return nil, "", err
	}
	s = newSession(conn, p.cfg.PublishChannels, p.cfg.MaxInFlight, p.logger)

	ch, err := conn.Channel()
	if err != nil {
		s.close()
		return nil, "", fmt.Errorf("channel.open: %w", err)
	}
	if err := declareTopology(ch, p.cfg.RabbitMQConfig); err != nil {
		s.close()
		return nil, "", err
	}
	if err := ch.Close(); err != nil {
		s.close()
		return nil, "", fmt.Errorf("channel.close: %w", err)
	}
	return s, addr, nil
}

// blockedError is the cause of a publish refused at once because the broker
// blocks publishing connections (a memory or disk alarm).
type blockedError struct {
	Reason string // the broker's words
}

func (e *blockedError) Error() string { return "connection blocked: " + e.Reason }

// session is one connection to the broker and the publishing channels
// opened on it. A new connection gets a new session.
type session struct {
	conn   *amqp.Connection
	closed chan *amqp.Error // connection.close from the broker, or a network error

	// inFlight holds one token per message awaiting its confirm, at most
	// SERVICE01_MAX_IN_FLIGHT: past that, a request waits for a place
	// (within its confirm timeout) instead of piling onto a broker that is
	// falling behind. A message whose confirm timed out keeps its token
	// until the confirm comes (Publish).
	inFlight chan struct{}

	// channels are the SERVICE01_PUBLISH_CHANNELS channels the messages
	// share, taken in turn. Many messages in flight on few channels let the
	// broker write and confirm them in batches, which costs it less per
	// message than one message per channel. Each slot holds its channel, or
	// nil for one to open, and is empty while a request opens it.
	channels []chan *confirmChannel
	next     atomic.Uint64

	mu      sync.Mutex
	blocked string // why the broker blocks publishing, while it does
}

func newSession(conn *amqp.Connection, channels, maxInFlight int, logger *slog.Logger) *session {
	s := &session{
		conn:     conn,
		closed:   conn.NotifyClose(make(chan *amqp.Error, 1)),
		inFlight: make(chan struct{}, maxInFlight),
		channels: make([]chan *confirmChannel, channels),
	}
	for i := range s.channels {
		s.channels[i] = make(chan *confirmChannel, 1)
		s.channels[i] <- nil
	}
	// The broker blocks publishing connections during a memory or disk
	// alarm: published messages then wait, unconfirmed, until it clears.
	// Knowing it lets Publish answer at once instead of timing out. The
	// library closes the channel when the connection closes.
	blockings := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
	go func() {
		for b := range blockings {
			s.mu.Lock()
			s.blocked = ""
			if b.Active {
				s.blocked = b.Reason
				if s.blocked == "" {
					s.blocked = "no reason given"
				}
			}
			s.mu.Unlock()
			if b.Active {
				logger.Warn("RabbitMQ blocks publishing", slog.String("reason", b.Reason))
			} else {
				logger.Info("RabbitMQ unblocked publishing")
			}
		}
	}()
	return s
}

// blockedReason returns why the broker blocks publishing, or "".
func (s *session) blockedReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked
}

// acquire takes a place in flight and the next channel in turn, opening it
// if needed, waiting until ctx is done at most. Call release once the
// message is confirmed, or will not be.
func (s *session) acquire(ctx context.Context) (*confirmChannel, error) {
	select {
	case s.inFlight <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of the %d places in flight: %w", cap(s.inFlight), ctx.Err())
	}
	slot := s.channels[s.next.Add(1)%uint64(len(s.channels))]
	var c *confirmChannel
	select {
	case c = <-slot:
	case <-ctx.Done(): // another request is opening this channel
		s.release()
		return nil, fmt.Errorf("waiting for a channel to open: %w", ctx.Err())
	}
	if c == nil || c.ch.IsClosed() {
		var err error
		if c, err = openConfirmChannel(ctx, s.conn, cap(s.inFlight)); err != nil {
			slot <- nil
			s.release()
			return nil, err
		}
	}
	slot <- c
	return c, nil
}

// release gives back the place in flight that acquire took.
func (s *session) release() {
	<-s.inFlight
}

// close closes the connection, and with it its channels. The deadline
// matters when the broker blocks the connection: it then reads nothing
// from it, not even connection.close.
func (s *session) close() error {
	return s.conn.CloseDeadline(time.Now().Add(closeTimeout))
}

// confirmChannel is a channel in confirm mode that many messages share.
//
// amqp091-go's documentation asks not to share a channel between
// goroutines, for its many calls in general. Publishing is the exception
// this relies on (amqp091-go 1.16, channel.go): PublishWithDeferredConfirm
// numbers the message and writes its frames under the channel's lock, so
// concurrent publishes neither interleave nor get each other's delivery
// tags. Nothing else is called on a shared channel.
type confirmChannel struct {
	ch      *amqp.Channel
	returns *returnedMessages // basic.return: which messages came back unroutable
}

// openConfirmChannel opens a channel in confirm mode, giving up when ctx
// is done. Opening takes two round trips to the broker, which a blocked
// connection never completes: RabbitMQ stops reading from a connection it
// blocks, until the alarm clears.
func openConfirmChannel(ctx context.Context, conn *amqp.Connection, maxInFlight int) (*confirmChannel, error) {
	type opened struct {
		c   *confirmChannel
		err error
	}
	done := make(chan opened, 1)
	go func() {
		c, err := openConfirmChannelNow(conn, maxInFlight)
		done <- opened{c, err}
	}()
	select {
	case o := <-done:
		return o.c, o.err
	case <-ctx.Done():
		// Close the channel if it opens after all.
		go func() {
			if o := <-done; o.err == nil {
				o.c.ch.Close()
			}
		}()
		return nil, fmt.Errorf("opening a channel: %w", ctx.Err())
	}
}

func openConfirmChannelNow(conn *amqp.Connection, maxInFlight int) (*confirmChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("channel.open: %w", err)
	}
	if err := ch.Confirm(
		false, // noWait
	); err != nil {
		ch.Close()
		return nil, fmt.Errorf("confirm.select: %w", err)
	}
	// Room for a return of every message that can be in flight; the
	// sweeper in returns.go empties it meanwhile.
	return &confirmChannel{ch: ch, returns: watchReturns(ch, maxInFlight)}, nil
}
