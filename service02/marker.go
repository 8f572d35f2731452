package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The replay's end marker: hardening beside the lesson in replay.go.
//
// A replay must read every event that was in the log when it began, and it
// cannot know where the log ends: over AMQP 0-9-1 a stream reports no
// length (queue.declare-ok says 0 messages, on RabbitMQ 3.10 and 4.3
// alike), and its offsets do not start at 0 once retention has removed a
// segment. Waiting for a quiet moment would not do either: under load, new
// pings never stop coming. So service02 appends a marker of its own and
// reads up to it. The log keeps one marker per service02 start; every reader
// of the log skips them by their type.

// markerType is the AMQP type of a marker; pings are "ping.created".
const markerType = "log.marker"

// markerTimeout bounds the wait for the marker's confirm, which a broker
// in a memory or disk alarm holds back; the consumer then reconnects and
// tries again.
const markerTimeout = 10 * time.Second

// appendMarker publishes a marker straight to the stream (through the
// default exchange, so that no queue gets it) and waits for the broker's
// confirm, which comes once the marker is in the log. It returns the
// marker's message id.
func appendMarker(ctx context.Context, ch *amqp.Channel, stream string) (string, error) {
	if err := ch.Confirm(false /* noWait */); err != nil {
		return "", fmt.Errorf("confirm.select: %w", err)
	}
	var b [16]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx,
		"",     // the default exchange routes to the queue named by the key
		stream, // routing key
		false,  // mandatory: the stream was declared a moment ago; were it gone, consuming it fails next
		false,  // immediate (not supported by RabbitMQ)
		amqp.Publishing{
			MessageId:    id,
			Type:         markerType,
			AppId:        "service02",
			Timestamp:    time.Now(),
			DeliveryMode: amqp.Persistent,
		})
	if err != nil {
		return "", fmt.Errorf("basic.publish of the replay marker: %w", err)
	}
	acked, err := confirm.WaitContext(ctx)
	if err != nil {
		return "", fmt.Errorf("the replay marker was not confirmed within %s (is the broker in a resource alarm?): %w", markerTimeout, err)
	}
	if !acked {
		return "", fmt.Errorf("the broker refused the replay marker (basic.nack)")
	}
	return id, nil
}
