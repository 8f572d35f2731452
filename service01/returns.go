package main

import (
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// This file is hardening for the lesson in confirm.go: with many messages
// in flight on one channel, telling which of them came back unroutable.
//
// The broker sends a mandatory message's basic.return before its
// basic.ack, and amqp091-go hands both over in that order: the return into
// the channel's NotifyReturn channel, then the ack to the message's
// DeferredConfirmation, both from the one goroutine that reads the
// connection. So once a message is confirmed, its return, if any, is
// already in the NotifyReturn channel or read from it. The returns are
// matched to their messages by message id. (This holds with amqp091-go's
// automatic recovery off, as service01 runs it: with it on, a closed
// channel's notifications and pending confirms are not closed.)

// returnSweep is how often returns nobody asked for are read, so that the
// NotifyReturn channel never fills: amqp091-go would wait for room, holding
// up every frame of the connection, and drop the return after 5 s.
const returnSweep = 100 * time.Millisecond

// returnedMessages collects the basic.returns of one channel for the
// messages published on it that await their confirm.
//
// The NotifyReturn channel is read only with mu held (take and sweep), never
// by a goroutine blocked in a receive: a return that such a goroutine held
// between its receive and taking mu would be missed by a take made meanwhile.
type returnedMessages struct {
	incoming chan amqp.Return // the channel's NotifyReturn

	mu       sync.Mutex
	waiting  map[string]int         // message id -> its publishes awaiting a confirm
	returned map[string]amqp.Return // message id -> the return of one of them
}

// watchReturns starts collecting the returns of ch, until ch closes.
func watchReturns(ch *amqp.Channel, buffer int) *returnedMessages {
	r := &returnedMessages{
		incoming: ch.NotifyReturn(make(chan amqp.Return, buffer)),
		waiting:  make(map[string]int),
		returned: make(map[string]amqp.Return),
	}
	go func() {
		t := time.NewTicker(returnSweep)
		defer t.Stop()
		for range t.C {
			if !r.sweep() {
				return
			}
		}
	}()
	return r
}

// expect notes that a message with this id is about to be published.
func (r *returnedMessages) expect(id string) {
	r.mu.Lock()
	r.waiting[id]++
	r.mu.Unlock()
}

// take returns the basic.return of the message id, if it came back, and
// stops expecting it. Call it once the message's confirm has arrived (or
// will not). Two messages with the same id in flight at once (a retry of
// the same Idempotency-Key after a confirm timed out, while the first
// still awaits its confirm) are one message sent twice: a return of either
// is reported to both, the side that answers a 503 rather than a 202 for a
// message stored nowhere.
func (r *returnedMessages) take(id string) (amqp.Return, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drain()
	ret, ok := r.returned[id]
	if r.waiting[id]--; r.waiting[id] <= 0 {
		delete(r.waiting, id)
		delete(r.returned, id)
	}
	return ret, ok
}

// sweep reads the returns waiting in the NotifyReturn channel. It reports
// false once the channel is closed.
func (r *returnedMessages) sweep() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.drain()
}

// drain moves the returns waiting in incoming into returned, keeping those
// of messages still awaited. The caller holds mu. It reports false once
// incoming is closed.
func (r *returnedMessages) drain() bool {
	for {
		select {
		case ret, ok := <-r.incoming:
			if !ok {
				return false
			}
			if r.waiting[ret.MessageId] > 0 {
				r.returned[ret.MessageId] = ret
			}
		default:
			return true
		}
	}
}
