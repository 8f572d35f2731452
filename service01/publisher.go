package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// publishError is a message the broker did not take. It says what happened,
// as data; the HTTP layer puts it into words for the client
// (publishFailure in handlers.go).
type publishError struct {
	Result string // what happened: one of the result labels of service01_publishes_total
	Sent   bool   // the message reached the broker first, so it may be stored after all
	Err    error  // the cause, for the logs

	// Pending, for a confirm that did not come in time, is closed when it
	// comes after all, or when the channel closes.
	Pending <-chan struct{}
}

func (e *publishError) Error() string { return e.Result + ": " + e.Err.Error() }
func (e *publishError) Unwrap() error { return e.Err }

// errNotConnected is the cause of a publish refused at once because
// service01 is not connected to the broker.
var errNotConnected = errors.New("not connected to RabbitMQ")

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
		downErr: fmt.Errorf("connecting to RabbitMQ at %s", cfg.RabbitMQAddr()),
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

// Publish publishes m and waits for the broker's confirm, at most
// SERVICE01_CONFIRM_TIMEOUT in all. It returns nil once the broker has
// taken responsibility for the message, or a *publishError. The protocol
// steps are publishConfirmed's (confirm.go); this is the bookkeeping around
// them: a place in flight and a channel, the time limit, metrics and logs.
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
			slog.Float64("took_ms", float64(time.Since(start).Microseconds())/1000))
	}
	return err
}

func (p *amqpPublisher) publish(ctx context.Context, m message) error {
	// Answer at once when the broker cannot take the message; waiting
	// for a reconnect would only hold the client and a connection.
	s, downErr := p.current()
	if s == nil {
		return &publishError{Result: resultUnavailable, Err: fmt.Errorf("%w: %w", errNotConnected, downErr)}
	}
	if reason := s.blockedReason(); reason != "" {
		return &publishError{Result: resultBlocked, Err: &blockedError{Reason: reason}}
	}

	// From here on, carry on even if the client hangs up: the metrics
	// should say what the broker did. SERVICE01_CONFIRM_TIMEOUT bounds it all.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ConfirmTimeout)
	defer cancel()
	c, err := s.acquire(ctx)
	if err != nil {
		result := resultUnavailable
		if ctx.Err() != nil {
			result = resultTimeout
		}
		return &publishError{Result: result, Err: err}
	}

	sent := time.Now()
	err = publishConfirmed(ctx, c, p.cfg.Exchange, p.cfg.RoutingKey, m)
	pubErr, _ := errors.AsType[*publishError](err)
	if err == nil || pubErr != nil && pubErr.Sent && (pubErr.Result == resultNacked || pubErr.Result == resultReturned) {
		// The broker answered: ack, nack or return.
		p.metrics.confirmDuration.Observe(time.Since(sent).Seconds())
	}
	if pubErr != nil && pubErr.Result == resultNacked {
		// Hardening: a channel that got a basic.nack is replaced, and
		// acquire opens a new one in its place. RabbitMQ nacks a message
		// that a queue it was routed to could not take, which a new channel
		// does not change; but on RabbitMQ 3.10, a channel opened while a
		// stream's leader fails over keeps the old leader and nacks
		// every message after, which a new channel does (the fault suite's
		// leader-kill scenario). Messages in flight on it fail as unavailable.
		go c.ch.Close()
	}
	if pubErr != nil && pubErr.Result == resultTimeout && pubErr.Sent && len(p.cfg.RabbitMQAddrs()) > 1 {
		// Hardening, on a cluster: a node that has not confirmed within
		// SERVICE01_CONFIRM_TIMEOUT may be cut off from the majority of
		// the cluster (a partition), where no queue can confirm anything,
		// and RabbitMQ 4 keeps its clients' connections open all the same.
		// The connection is closed, and Run dials the next node.
		p.logger.Warn("no confirm in time: leaving this node for another",
			slog.Duration("confirm_timeout", p.cfg.ConfirmTimeout))
		go s.close()
	}
	if pubErr != nil && pubErr.Pending != nil {
		// The message still awaits its confirm at the broker: its place in
		// flight stays taken until the answer comes, so that a broker
		// falling behind holds at most SERVICE01_MAX_IN_FLIGHT of them.
		go func() {
			<-pubErr.Pending
			s.release()
		}()
	} else {
		s.release()
	}
	return err
}
