package main

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// declareTopology declares the lab's exchanges, queues and bindings. service02
// declares exactly the same from the same variables, so whichever starts
// first creates them and the other finds them as it expects. Declaring is
// idempotent: it runs at every (re)connect.
//
// A 406 PRECONDITION_FAILED means something of that name exists with other
// settings, which retrying cannot fix: the error is a *topologyError.
func declareTopology(ch *amqp.Channel, cfg config) error {
	if err := ch.ExchangeDeclare(
		cfg.Exchange,
		"topic",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatch(fmt.Errorf("exchange.declare: %w", err), "exchange", cfg.Exchange, "RABBITMQ_EXCHANGE")
	}
	if err := ch.ExchangeDeclare(
		cfg.DeadLetterExchange,
		"fanout",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatch(fmt.Errorf("exchange.declare: %w", err), "exchange", cfg.DeadLetterExchange, "RABBITMQ_DEAD_LETTER_EXCHANGE")
	}

	if _, err := ch.QueueDeclare(
		cfg.DeadLetterQueue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		amqp.Table{"x-queue-type": cfg.QueueType},
	); err != nil {
		return mismatch(fmt.Errorf("queue.declare: %w", err), "queue", cfg.DeadLetterQueue, "RABBITMQ_DEAD_LETTER_QUEUE")
	}
	if err := ch.QueueBind(
		cfg.DeadLetterQueue,
		"", // a fanout exchange ignores the key
		cfg.DeadLetterExchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}

	args := amqp.Table{
		"x-queue-type": cfg.QueueType,
		// Rejected messages go to the dead-letter exchange, not away.
		"x-dead-letter-exchange": cfg.DeadLetterExchange,
	}
	if cfg.QueueType == "quorum" {
		// Classic queues do not support a delivery limit (RabbitMQ 3.10).
		args["x-delivery-limit"] = int64(cfg.DeliveryLimit)
	}
	if _, err := ch.QueueDeclare(
		cfg.Queue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		args,
	); err != nil {
		return mismatch(fmt.Errorf("queue.declare: %w", err), "queue", cfg.Queue, "RABBITMQ_QUEUE")
	}
	if err := ch.QueueBind(
		cfg.Queue,
		cfg.RoutingKey,
		cfg.Exchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}
	return nil
}

// topologyError is a queue or exchange that exists with other settings than
// the configured ones. Reconnecting cannot fix it; a person must.
type topologyError struct {
	msg string
	err error
}

func (e *topologyError) Error() string { return e.msg }
func (e *topologyError) Unwrap() error { return e.err }

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
	}
	return ""
}

// mismatch turns a 406 PRECONDITION_FAILED from declaring the kind ("queue"
// or "exchange") called name into a *topologyError that quotes RabbitMQ's
// reason and says how to fix it. Other errors are returned as they are.
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
	return &topologyError{
		msg: fmt.Sprintf("%s %q already exists with other arguments (%s): delete it in the management UI (%s > %s > Delete) or %s",
			kind, name, reason, page, name, fix),
		err: err,
	}
}
