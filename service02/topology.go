package main

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// declareTopology declares the lab's exchanges, queues and bindings on ch.
// Both services declare exactly the same, from the same variables, every
// time they (re)connect, so whichever starts first creates them and the
// other finds them as it expects. Declaring is idempotent: it creates what
// is missing and checks that what exists has the same arguments.
//
// When an exchange or queue already exists with other arguments (a 406
// PRECONDITION_FAILED, which retrying cannot fix), it returns a
// *mismatchError; the broker has then closed ch.
func declareTopology(ch *amqp.Channel, c RabbitMQConfig) error {
	if err := ch.ExchangeDeclare(
		c.Exchange,
		"topic",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatch(fmt.Errorf("exchange.declare: %w", err), "exchange", c.Exchange, "RABBITMQ_EXCHANGE")
	}
	if err := ch.ExchangeDeclare(
		c.DeadLetterExchange,
		"fanout",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatch(fmt.Errorf("exchange.declare: %w", err), "exchange", c.DeadLetterExchange, "RABBITMQ_DEAD_LETTER_EXCHANGE")
	}

	if _, err := ch.QueueDeclare(
		c.DeadLetterQueue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		amqp.Table{"x-queue-type": c.QueueType},
	); err != nil {
		return mismatch(fmt.Errorf("queue.declare: %w", err), "queue", c.DeadLetterQueue, "RABBITMQ_DEAD_LETTER_QUEUE")
	}
	if err := ch.QueueBind(
		c.DeadLetterQueue,
		"", // a fanout exchange ignores the routing key
		c.DeadLetterExchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}

	args := amqp.Table{
		"x-queue-type": c.QueueType,
		// Rejected messages (the consumer rejects invalid ones) go to the
		// dead-letter exchange instead of being dropped.
		"x-dead-letter-exchange": c.DeadLetterExchange,
	}
	if c.QueueType == "quorum" {
		// A message that keeps failing (a consumer that crashes on it, say)
		// is dead-lettered after this many deliveries instead of looping
		// forever. Classic queues have no delivery limit.
		args["x-delivery-limit"] = int64(c.DeliveryLimit)
	}
	if _, err := ch.QueueDeclare(
		c.Queue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		args,
	); err != nil {
		return mismatch(fmt.Errorf("queue.declare: %w", err), "queue", c.Queue, "RABBITMQ_QUEUE")
	}
	if err := ch.QueueBind(
		c.Queue,
		c.RoutingKey,
		c.Exchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}

	// The event log: a stream, bound like the queue, so that every ping
	// routed to the queue is appended to the log as well. Consuming from a
	// queue removes a message; reading a stream removes nothing, so any
	// reader can read it from any offset, any number of times, until
	// retention removes the oldest segments (by age or by the log's size,
	// whichever comes first).
	if _, err := ch.QueueDeclare(
		c.LogStream,
		true,  // durable: a stream always is
		false, // autoDelete
		false, // exclusive
		false, // noWait
		amqp.Table{
			"x-queue-type":                    "stream",
			"x-max-age":                       c.LogMaxAge,
			"x-max-length-bytes":              c.LogMaxBytes,
			"x-stream-max-segment-size-bytes": c.LogSegmentBytes,
		},
	); err != nil {
		return mismatch(fmt.Errorf("queue.declare: %w", err), "queue", c.LogStream, "RABBITMQ_LOG_STREAM")
	}
	if err := ch.QueueBind(
		c.LogStream,
		c.RoutingKey,
		c.Exchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}
	return nil
}

// mismatchError is an exchange or queue that exists with other arguments
// than the configured ones. Reconnecting cannot fix it; a person must, so
// the service stops and says what to do.
type mismatchError struct {
	msg string
	err error
}

func (e *mismatchError) Error() string { return e.msg }
func (e *mismatchError) Unwrap() error { return e.err }

// mismatch turns a 406 PRECONDITION_FAILED from declaring the kind ("queue"
// or "exchange") called name into a *mismatchError that quotes RabbitMQ's
// reason and says how to fix it; nameVariable is the variable that names
// it. Other errors are returned as they are.
func mismatch(err error, kind, name, nameVariable string) error {
	amqpErr, ok := errors.AsType[*amqp.Error](err)
	if !ok || amqpErr.Code != amqp.PreconditionFailed {
		return err
	}
	reason := strings.TrimPrefix(amqpErr.Reason, "PRECONDITION_FAILED - ")
	fix := "set " + nameVariable + " to another name"
	// "... but current is 'classic'" can be matched by a variable; "...
	// but current is none" (the existing queue lacks the argument) cannot.
	if v := argVariable(inequivalentArg(reason)); v != "" && kind == "queue" && !strings.HasSuffix(reason, "current is none") {
		fix = "set " + v + " to match"
	}
	page := "Queues"
	if kind == "exchange" {
		page = "Exchanges"
	}
	return &mismatchError{
		msg: fmt.Sprintf("%s %q already exists with other arguments (%s): delete it in the management UI (%s > %s > Delete) or %s",
			kind, name, reason, page, name, fix),
		err: err,
	}
}

// inequivalentArg returns the argument RabbitMQ names in a 406 reason such as
// "inequivalent arg 'x-queue-type' for queue 'pings' in vhost '/': ...".
func inequivalentArg(reason string) string {
	_, after, ok := strings.Cut(reason, "inequivalent arg '")
	if !ok {
		return ""
	}
	arg, _, _ := strings.Cut(after, "'")
	return arg
}

// argVariable returns the variable that sets a queue argument.
func argVariable(arg string) string {
	switch arg {
	case "x-queue-type":
		return "RABBITMQ_QUEUE_TYPE"
	case "x-delivery-limit":
		return "RABBITMQ_DELIVERY_LIMIT"
	case "x-dead-letter-exchange":
		return "RABBITMQ_DEAD_LETTER_EXCHANGE"
	case "x-max-age":
		return "RABBITMQ_LOG_MAX_AGE"
	case "x-max-length-bytes":
		return "RABBITMQ_LOG_MAX_BYTES"
	case "x-stream-max-segment-size-bytes":
		return "RABBITMQ_LOG_SEGMENT_BYTES"
	}
	return ""
}
