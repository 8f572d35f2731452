package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// publishConfirmed is the lesson of service01: publish one message so that
// the broker either takes responsibility for it or says it did not, and wait
// for that answer. c is a channel in confirm mode (confirm.select), which
// other messages may share; ctx bounds the whole wait
// (SERVICE01_CONFIRM_TIMEOUT). It returns nil once the broker has confirmed
// the message, else a *publishError saying what happened. Getting a channel,
// reconnecting and the words for the HTTP client live elsewhere
// (publisher.go, connection.go, handlers.go); so do the types this function
// uses: confirmChannel (connection.go), returnedMessages (returns.go),
// publishError (publisher.go) and the result values (metrics.go).
func publishConfirmed(ctx context.Context, c *confirmChannel, exchange, routingKey string, m message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	c.returns.expect(m.ID)
	confirm, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, routingKey,
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
	if err != nil {
		c.returns.take(m.ID)
		if errors.Is(err, context.DeadlineExceeded) {
			return &publishError{Result: resultTimeout, Err: fmt.Errorf("basic.publish: %w", err)}
		}
		return &publishError{Result: resultUnavailable, Err: fmt.Errorf("basic.publish: %w", err)}
	}

	// Wait for the broker's basic.ack or basic.nack of this message. The
	// channel numbers its messages (delivery tags), so the answer is this
	// message's even with others in flight, and one basic.ack with
	// multiple=true may answer many at once.
	acked, err := confirm.WaitContext(ctx)
	// RabbitMQ sends the basic.return of an unroutable mandatory message
	// before its basic.ack, and amqp091-go hands both over in that order:
	// once the ack is here, so is the return, if there was one.
	ret, returned := c.returns.take(m.ID)
	switch {
	case err != nil:
		// Maybe sent, maybe stored: only the broker knows. A late confirm
		// goes to this message's delivery tag and harms no other.
		return &publishError{Result: resultTimeout, Sent: true, Pending: confirm.Done(), Err: fmt.Errorf("waiting for the confirm: %w", err)}
	case returned:
		// Confirmed, but stored nowhere.
		return &publishError{Result: resultReturned, Sent: true, Err: fmt.Errorf("basic.return: %d %s", ret.ReplyCode, ret.ReplyText)}
	case !acked && c.ch.IsClosed():
		// amqp091-go also reports a confirm as negative when the channel
		// closes before it arrives.
		return &publishError{Result: resultUnavailable, Sent: true, Err: errors.New("the channel closed while waiting for the confirm")}
	case !acked:
		return &publishError{Result: resultNacked, Sent: true, Err: errors.New("basic.nack")}
	}
	return nil
}
