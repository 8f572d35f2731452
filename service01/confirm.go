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
// for that answer. c is a channel in confirm mode (confirm.select) with no
// other message in flight; ctx bounds the whole wait
// (SERVICE01_CONFIRM_TIMEOUT). It returns nil once the broker has confirmed
// the message, else a *publishError saying what happened. Getting a channel,
// reconnecting and the words for the HTTP client live elsewhere
// (publisher.go, connection.go, handlers.go); so do the types this function
// uses: confirmChannel (connection.go), publishError (publisher.go) and the
// result values (metrics.go).
func publishConfirmed(ctx context.Context, c *confirmChannel, exchange, routingKey string, m message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
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
	if errors.Is(err, context.DeadlineExceeded) {
		// The time ran out before sending: the channel is as good as before.
		return &publishError{Result: resultTimeout, Err: fmt.Errorf("basic.publish: %w", err)}
	}
	if err != nil {
		c.inDoubt = true
		return &publishError{Result: resultUnavailable, Err: fmt.Errorf("basic.publish: %w", err)}
	}

	// Wait for the broker's basic.ack or basic.nack of this message.
	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		// The confirm may still come, late: the channel must not carry
		// another message, or that confirm would be taken for its.
		c.inDoubt = true
		return &publishError{Result: resultTimeout, Sent: true, Err: fmt.Errorf("waiting for the confirm: %w", err)}
	}
	// RabbitMQ sends the basic.return of an unroutable mandatory message
	// before its basic.ack, and amqp091-go hands both over in that order:
	// with one message in flight on the channel, a return waiting now is
	// this message's. Confirmed, but stored nowhere.
	select {
	case ret, ok := <-c.returns:
		if ok {
			return &publishError{Result: resultReturned, Sent: true, Err: fmt.Errorf("basic.return: %d %s", ret.ReplyCode, ret.ReplyText)}
		}
	default:
	}
	if !acked {
		c.inDoubt = true
		// amqp091-go also reports a confirm as negative when the channel
		// closes before it arrives; NotifyClose tells the two apart.
		select {
		case amqpErr := <-c.closed:
			return &publishError{Result: resultUnavailable, Sent: true, Err: fmt.Errorf("channel closed while waiting for the confirm: %v", amqpErr)}
		default:
			return &publishError{Result: resultNacked, Sent: true, Err: errors.New("basic.nack")}
		}
	}
	return nil
}
