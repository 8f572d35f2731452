package main

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// topology names the exchanges and queues both services declare, the same
// way, every time they (re)connect. Declaring is idempotent: it creates what
// is missing and checks that what exists has the same arguments.
type topology struct {
	Exchange           string
	RoutingKey         string
	Queue              string
	QueueType          string // "quorum" or "classic"
	DeliveryLimit      int    // quorum queues only
	DeadLetterExchange string
	DeadLetterQueue    string
}

// declare declares the topology on ch. When an exchange or queue already
// exists with other arguments, it returns a *mismatchError; the broker has
// then closed ch.
func (t topology) declare(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(
		t.Exchange,
		"topic",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatchOr("exchange", t.Exchange, "RABBITMQ_EXCHANGE", "exchange.declare", err)
	}
	if err := ch.ExchangeDeclare(
		t.DeadLetterExchange,
		"fanout",
		true,  // durable
		false, // autoDelete
		false, // internal
		false, // noWait
		nil,
	); err != nil {
		return mismatchOr("exchange", t.DeadLetterExchange, "RABBITMQ_DEAD_LETTER_EXCHANGE", "exchange.declare", err)
	}

	if _, err := ch.QueueDeclare(
		t.DeadLetterQueue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		amqp.Table{"x-queue-type": t.QueueType},
	); err != nil {
		return mismatchOr("queue", t.DeadLetterQueue, "RABBITMQ_DEAD_LETTER_QUEUE", "queue.declare", err)
	}
	if err := ch.QueueBind(
		t.DeadLetterQueue,
		"", // a fanout exchange ignores the routing key
		t.DeadLetterExchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}

	args := amqp.Table{
		"x-queue-type": t.QueueType,
		// Rejected messages (service02 rejects invalid ones) go here
		// instead of being dropped.
		"x-dead-letter-exchange": t.DeadLetterExchange,
	}
	if t.QueueType == "quorum" {
		// A message that keeps failing (a consumer that crashes on it, say)
		// is dead-lettered after this many deliveries instead of looping
		// forever.
		args["x-delivery-limit"] = int64(t.DeliveryLimit)
	}
	if _, err := ch.QueueDeclare(
		t.Queue,
		true,  // durable
		false, // autoDelete
		false, // exclusive
		false, // noWait
		args,
	); err != nil {
		return mismatchOr("queue", t.Queue, "RABBITMQ_QUEUE", "queue.declare", err)
	}
	if err := ch.QueueBind(
		t.Queue,
		t.RoutingKey,
		t.Exchange,
		false, // noWait
		nil,
	); err != nil {
		return fmt.Errorf("queue.bind: %w", err)
	}
	return nil
}

// mismatchError reports an exchange or queue that exists with arguments
// other than the ones this service declares. It is permanent: retrying
// cannot fix it, so the service stops and says what to do.
type mismatchError struct {
	kind   string // "exchange" or "queue"
	name   string
	reason string // RabbitMQ's explanation, which names the argument
	fix    string // the variable to change, as a clause
}

func (e *mismatchError) Error() string {
	section := "Exchanges"
	if e.kind == "queue" {
		section = "Queues"
	}
	return fmt.Sprintf("%s %q already exists with other arguments (%s): delete it in the management UI (%s > %s > Delete) or %s",
		e.kind, e.name, e.reason, section, e.name, e.fix)
}

// mismatchOr labels err with the protocol method, or turns a 406
// PRECONDITION_FAILED into a *mismatchError. nameVar is the variable that
// names the exchange or queue.
func mismatchOr(kind, name, nameVar, method string, err error) error {
	amqpErr, ok := errors.AsType[*amqp.Error](err)
	if !ok || amqpErr.Code != amqp.PreconditionFailed {
		return fmt.Errorf("%s: %w", method, err)
	}
	reason := strings.TrimPrefix(amqpErr.Reason, "PRECONDITION_FAILED - ")
	// RabbitMQ quotes the argument it compared: "inequivalent arg
	// 'x-queue-type' for queue 'pings' in vhost '/': received ...".
	fix := "set " + nameVar + " to another name"
	for arg, v := range map[string]string{
		"x-queue-type":           "RABBITMQ_QUEUE_TYPE",
		"x-delivery-limit":       "RABBITMQ_DELIVERY_LIMIT",
		"x-dead-letter-exchange": "RABBITMQ_DEAD_LETTER_EXCHANGE",
	} {
		if strings.Contains(reason, "'"+arg+"'") {
			fix = "set " + v + " to match"
		}
	}
	return &mismatchError{kind: kind, name: name, reason: reason, fix: fix}
}
