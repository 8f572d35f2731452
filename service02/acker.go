package main

import (
	"log/slog"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Batched acknowledgements: an optimisation of the consume loop in
// consumer.go, named so. Without it, handle would call d.Ack(false) for
// each message once it is stored; with it, one basic.ack with
// multiple=true covers many stored messages.
//
// What it is worth, measured on the 2-core machine the lab is built on
// (RabbitMQ 3.10, a quorum queue, prefetch 200, nothing stored, two runs):
// 28 000 and 34 000 deliveries/s acking each on its own, 59 000 and 41 000
// in batches of 100, about 1.5 times as many. BenchmarkAcks measures it:
//
//	go test -run '^$' -bench Acks -benchtime 20000x -count 2 ./service02

// ackBatch is how many stored messages may wait for their ack: half the
// prefetch, at least 1. The broker sends no more than the prefetch ahead of
// the acks; acking at half of it lets the broker refill the other half
// while the consumer works, so the window never fills up and stalls.
func ackBatch(prefetch int) int {
	return max(prefetch/2, 1)
}

// acker acknowledges stored deliveries in batches, with basic.ack
// multiple=true: one ack for tag N settles every delivery on the channel
// with a tag up to N that is still unacknowledged.
//
// That is safe only because the consumer handles its deliveries one at a
// time, in the order of their tags, on one goroutine: when the delivery
// with tag N is stored, every earlier one has been stored or dead-lettered
// already. With several workers, "up to N" could ack a message still being
// stored.
//
// An acker belongs to one channel (tags are per channel) and one goroutine.
type acker struct {
	ch     amqp.Acknowledger // the channel; a fake in unit tests
	batch  int               // flush when this many are pending
	logger *slog.Logger

	tag     uint64 // the highest tag stored but not yet acked
	pending int    // how many stored deliveries that ack will cover
}

func newAcker(ch amqp.Acknowledger, batch int, logger *slog.Logger) *acker {
	return &acker{ch: ch, batch: batch, logger: logger}
}

// ack acknowledges the delivery with this tag, stored (or found to be a
// duplicate): it is sent with the next batch, at once when the batch is
// full.
func (a *acker) ack(tag uint64) {
	a.tag = tag
	a.pending++
	if a.pending >= a.batch {
		a.flush()
	}
}

// flush acks every stored delivery not acked yet, in one basic.ack; it does
// nothing when none is pending.
func (a *acker) flush() {
	if a.pending == 0 {
		return
	}
	if err := a.ch.Ack(a.tag, true /* multiple */); err != nil {
		// Ack fails only when the channel is closed or the connection
		// broken, and then the broker puts the messages back in the queue
		// by itself: they come again and the store drops them. Retrying
		// would not help.
		a.logger.Warn("basic.ack failed; the messages will be redelivered",
			"error", err.Error(), "delivery_tag", a.tag, "messages", a.pending)
	}
	a.pending = 0
}

// deadLetter rejects the delivery with this tag alone, without requeueing,
// so that the broker dead-letters it.
//
// It flushes the pending acks first. Acking past a nacked tag later would be
// safe as well (a nacked delivery is no longer outstanding, so a multiple
// ack does not touch it), but this way the order on the wire is plain:
// everything before the invalid message is acked, then it is nacked.
func (a *acker) deadLetter(tag uint64) error {
	a.flush()
	return a.ch.Nack(tag,
		false, // multiple: this delivery only
		false, // requeue: dead-letter it instead
	)
}
