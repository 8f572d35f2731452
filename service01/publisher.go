package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Connection timing.
const (
	minBackoff   = 100 * time.Millisecond // first wait before re-dialling
	maxBackoff   = 5 * time.Second        // the wait doubles up to this
	dialTimeout  = 5 * time.Second        // TCP connect, then the AMQP handshake
	closeTimeout = 5 * time.Second        // the connection.close handshake at shutdown
)

// publishError is a message that was not published, because of the broker
// or the connection to it; the client may retry.
type publishError struct {
	Result string // the service01_publishes_total result label
	Detail string // for the client: what happened and what to do
	Err    error  // the cause, for the logs
}

func (e *publishError) Error() string { return e.Result + ": " + e.Err.Error() }
func (e *publishError) Unwrap() error { return e.Err }

// amqpPublisher publishes messages with publisher confirms. Run keeps it
// connected; Publish uses the connection of the moment, if there is one.
//
// It reconnects with a small loop of its own rather than amqp091-go's
// Config.Recovery: the loop also retries the very first dial (the service
// starts before the broker), keeps retrying forever, re-declares the
// topology, and drives /readyz and the service01_connected metric.
type amqpPublisher struct {
	cfg     config
	logger  *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	session *session // nil while not connected
	downErr error    // why not, while session is nil
}

func newPublisher(cfg config, logger *slog.Logger, m *metrics) *amqpPublisher {
	return &amqpPublisher{
		cfg:     cfg,
		logger:  logger,
		metrics: m,
		downErr: fmt.Errorf("connecting to RabbitMQ at %s", cfg.RabbitAddr()),
	}
}

// Ready returns nil while connected with the topology declared, else why not.
func (p *amqpPublisher) Ready() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.session == nil {
		return p.downErr
	}
	return nil
}

func (p *amqpPublisher) current() (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.session, p.downErr
}

func (p *amqpPublisher) setUp(s *session) {
	p.mu.Lock()
	p.session, p.downErr = s, nil
	p.mu.Unlock()
	p.metrics.connected.Set(1)
}

func (p *amqpPublisher) setDown(why error) {
	p.mu.Lock()
	p.session, p.downErr = nil, why
	p.mu.Unlock()
	p.metrics.connected.Set(0)
}

// Run connects to the broker, declares the topology and stays connected,
// re-dialling with exponential backoff and jitter whenever the connection
// fails, until ctx is done; then it closes the connection and returns nil.
// It returns an error only for what retrying cannot fix: a queue or
// exchange that exists with other settings (a *topologyError).
//
// Stop the HTTP server before ctx is done, so that the requests in flight
// get their confirms before the connection closes.
func (p *amqpPublisher) Run(ctx context.Context) error {
	addr := p.cfg.RabbitAddr()
	backoff := minBackoff
	for {
		s, err := p.connect(ctx)
		if err != nil {
			if topoErr, ok := errors.AsType[*topologyError](err); ok {
				p.setDown(topoErr)
				return topoErr
			}
			if ctx.Err() != nil {
				return nil
			}
			p.setDown(fmt.Errorf("not connected to RabbitMQ at %s: %w; retrying", addr, err))
			// Jitter spreads the retries of many instances after a broker restart.
			wait := backoff/2 + rand.N(backoff/2)
			backoff = min(2*backoff, maxBackoff)
			p.logger.Warn("cannot connect to RabbitMQ", slog.String("addr", addr),
				slog.Any("error", err), slog.Int64("retry_in_ms", wait.Milliseconds()))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			continue
		}

		backoff = minBackoff
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

// connect dials the broker and declares the topology.
func (p *amqpPublisher) connect(ctx context.Context) (*session, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("service01") // shown in the management UI
	conn, err := amqp.DialConfig(p.cfg.AMQPURL(), amqp.Config{
		Properties: props,
		Dial:       dialContext(ctx),
	})
	if err != nil {
		return nil, err
	}
	s := newSession(conn, p.cfg.PublishChannels, p.logger)

	ch, err := conn.Channel()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("channel.open: %w", err)
	}
	if err := declareTopology(ch, p.cfg); err != nil {
		s.close()
		return nil, err
	}
	if err := ch.Close(); err != nil {
		s.close()
		return nil, fmt.Errorf("channel.close: %w", err)
	}
	return s, nil
}

// dialContext is amqp.DefaultDial made to give up when ctx is done, so
// that shutting down does not wait for a dial to an unreachable broker.
func dialContext(ctx context.Context) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// Bound the AMQP handshake too; amqp091-go clears the deadline once
		// the connection is open.
		if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// Publish publishes m and waits for the broker's confirm, at most
// SERVICE01_CONFIRM_TIMEOUT in all. It returns nil once the broker has
// taken responsibility for the message, or a *publishError.
func (p *amqpPublisher) Publish(ctx context.Context, m message) error {
	start := time.Now()
	err := p.publish(ctx, m)
	result := resultConfirmed
	if pubErr, ok := errors.AsType[*publishError](err); ok {
		result = pubErr.Result
	}
	p.metrics.publishes.WithLabelValues(result).Inc()
	if result == resultConfirmed {
		p.logger.Debug("published", slog.String("id", m.ID), slog.String("request_id", m.RequestID),
			slog.Duration("took", time.Since(start)))
	}
	return err
}

func (p *amqpPublisher) publish(ctx context.Context, m message) error {
	// Answer at once when the broker cannot take the message; waiting
	// for a reconnect would only hold the client and a connection.
	s, downErr := p.current()
	if s == nil {
		return &publishError{
			Result: resultUnavailable,
			Detail: fmt.Sprintf("service01 is not connected to RabbitMQ at %s, so the message was not sent. Retry in a few seconds.", p.cfg.RabbitAddr()),
			Err:    downErr,
		}
	}
	if reason := s.blockedReason(); reason != "" {
		return &publishError{
			Result: resultBlocked,
			Detail: fmt.Sprintf("RabbitMQ is blocked by a memory or disk alarm (%s) and accepts no messages, so the message was not sent. Retry later; the alarm clears once the broker has freed memory or disk space.", reason),
			Err:    fmt.Errorf("connection blocked: %s", reason),
		}
	}

	body, err := json.Marshal(m)
	if err != nil {
		return err
	}

	// From here on, carry on even if the client hangs up: a channel can be
	// reused only once its message is confirmed, and the metrics should say
	// what the broker did. SERVICE01_CONFIRM_TIMEOUT bounds it all.
	timeout := p.cfg.ConfirmTimeout
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	notSentInTime := fmt.Sprintf("No channel to RabbitMQ was free or could be opened within %s, so the message was not sent. Retry the request.", timeout)

	c, err := s.acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return &publishError{Result: resultTimeout, Detail: notSentInTime, Err: err}
		}
		return &publishError{
			Result: resultUnavailable,
			Detail: "service01 could not open a channel to RabbitMQ, so the message was not sent. Retry the request.",
			Err:    err,
		}
	}

	sent := time.Now()
	confirm, err := c.ch.PublishWithDeferredConfirmWithContext(ctx,
		p.cfg.Exchange,
		p.cfg.RoutingKey,
		true,  // mandatory: an unroutable message comes back (basic.return) instead of vanishing
		false, // immediate: not supported by RabbitMQ
		amqp.Publishing{
			ContentType:   "application/json",
			DeliveryMode:  amqp.Persistent, // written to disk, survives a broker restart
			MessageId:     m.ID,
			Timestamp:     time.Now(),
			CorrelationId: m.RequestID,
			AppId:         "service01",
			Type:          "ping.created",
			Body:          body,
		},
	)
	if errors.Is(err, context.DeadlineExceeded) {
		// The time ran out before sending: the channel is as good as before.
		s.release(c)
		return &publishError{Result: resultTimeout, Detail: notSentInTime, Err: fmt.Errorf("basic.publish: %w", err)}
	}
	if err != nil {
		s.discard(c)
		return &publishError{
			Result: resultUnavailable,
			Detail: "The connection to RabbitMQ failed while sending the message, so it was not stored. Retry the request.",
			Err:    fmt.Errorf("basic.publish: %w", err),
		}
	}

	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		// The confirm may still come, late: never reuse this channel, or
		// that confirm (or return) would be taken for another message's.
		s.discard(c)
		return &publishError{
			Result: resultTimeout,
			Detail: fmt.Sprintf("RabbitMQ did not confirm the message within %s; it may not have been stored. Retry the request.", timeout),
			Err:    fmt.Errorf("waiting for the confirm: %w", err),
		}
	}
	p.metrics.confirmDuration.Observe(time.Since(sent).Seconds())

	// RabbitMQ sends basic.return before the basic.ack of an unroutable
	// mandatory message, and amqp091-go hands both over in that order from
	// the one goroutine that reads the connection: the return is put in
	// c.returns before the confirm is marked done. With one message in
	// flight per channel, a return waiting now is this message's.
	select {
	case ret, ok := <-c.returns:
		if ok {
			s.release(c)
			return &publishError{
				Result: resultReturned,
				Detail: fmt.Sprintf("RabbitMQ could not route the message to any queue: no queue is bound to exchange %q with routing key %q, so it was not stored. Check the queue and its binding in the management UI (restarting service01 or service02 declares them again), then retry.", p.cfg.Exchange, p.cfg.RoutingKey),
				Err:    fmt.Errorf("basic.return: %d %s", ret.ReplyCode, ret.ReplyText),
			}
		}
	default:
	}

	if !acked {
		// amqp091-go also reports a confirm as negative when the channel
		// closes before it arrives; NotifyClose tells the two apart.
		select {
		case amqpErr := <-c.closed:
			s.discard(c)
			return &publishError{
				Result: resultUnavailable,
				Detail: "The connection to RabbitMQ closed before the message was confirmed; it may not have been stored. Retry the request.",
				Err:    fmt.Errorf("channel closed while waiting for the confirm: %v", amqpErr),
			}
		default:
		}
		s.discard(c)
		return &publishError{
			Result: resultNacked,
			Detail: "RabbitMQ refused the message (basic.nack), so it may not have been stored. Retry the request.",
			Err:    errors.New("basic.nack"),
		}
	}

	s.release(c)
	return nil
}

// session is one connection to the broker and the publishing channels
// opened on it. A new connection gets a new session.
type session struct {
	conn   *amqp.Connection
	closed chan *amqp.Error // connection.close from the broker, or a network error

	// pool holds one entry per channel that may be in use: an open channel
	// ready to publish on, or nil for one to open. Taking an entry is the
	// right to publish, so at most SERVICE01_PUBLISH_CHANNELS messages are
	// in flight, each alone on its channel. (amqp091-go channels must not
	// be shared by goroutines that publish, and one message per channel is
	// what makes a basic.return easy to attribute.)
	pool chan *confirmChannel

	mu      sync.Mutex
	blocked string // why the broker blocks publishing, while it does
}

func newSession(conn *amqp.Connection, channels int, logger *slog.Logger) *session {
	s := &session{
		conn:   conn,
		closed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		pool:   make(chan *confirmChannel, channels),
	}
	for range channels {
		s.pool <- nil
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

// acquire takes a channel from the pool, opening one if needed, waiting
// until ctx is done at most.
func (s *session) acquire(ctx context.Context) (*confirmChannel, error) {
	var c *confirmChannel
	select {
	case c = <-s.pool:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free channel: %w", ctx.Err())
	}
	if c != nil && !c.ch.IsClosed() {
		return c, nil
	}
	c, err := openConfirmChannel(ctx, s.conn)
	if err != nil {
		s.pool <- nil
		return nil, err
	}
	return c, nil
}

// release gives a channel back to the pool for the next message.
func (s *session) release(c *confirmChannel) {
	s.pool <- c
}

// discard closes a channel that may be in doubt, in the background, and
// frees its place in the pool for a new one.
func (s *session) discard(c *confirmChannel) {
	go c.ch.Close()
	s.pool <- nil
}

// close closes the connection, and with it its channels. The deadline
// matters when the broker blocks the connection: it then reads nothing
// from it, not even connection.close.
func (s *session) close() error {
	return s.conn.CloseDeadline(time.Now().Add(closeTimeout))
}

// confirmChannel is a channel in confirm mode, for one message at a time.
type confirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return // basic.return: an unroutable message came back
	closed  chan *amqp.Error // the channel closed
}

// openConfirmChannel opens a channel in confirm mode, giving up when ctx
// is done. Opening takes two round trips to the broker, which a blocked
// connection never completes: RabbitMQ stops reading from a connection it
// blocks, until the alarm clears.
func openConfirmChannel(ctx context.Context, conn *amqp.Connection) (*confirmChannel, error) {
	type opened struct {
		c   *confirmChannel
		err error
	}
	done := make(chan opened, 1)
	go func() {
		c, err := openConfirmChannelNow(conn)
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

func openConfirmChannelNow(conn *amqp.Connection) (*confirmChannel, error) {
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
	return &confirmChannel{
		ch: ch,
		// Buffered, so the library never waits on us: it sends at most one
		// return per message and one close error per channel, and Publish
		// reads the return of every message.
		returns: ch.NotifyReturn(make(chan amqp.Return, 1)),
		closed:  ch.NotifyClose(make(chan *amqp.Error, 1)),
	}, nil
}
