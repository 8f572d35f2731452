package main

import (
	"container/list"
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// maxKeyLen is the longest Idempotency-Key accepted.
const maxKeyLen = 255

// parseIdempotencyKey returns the request's Idempotency-Key, "" when it has
// none, or an error (a sentence for the client) when the header is invalid:
// it must appear once, with 1 to 255 visible ASCII characters (0x21-0x7E).
func parseIdempotencyKey(h http.Header) (string, error) {
	values := h.Values("Idempotency-Key")
	switch {
	case len(values) == 0:
		return "", nil
	case len(values) > 1:
		return "", invalidf("The Idempotency-Key header appears %d times; send it once, with 1 to %d visible ASCII characters (0x21-0x7E), e.g. a UUID.", len(values), maxKeyLen)
	}
	key := values[0]
	if len(key) == 0 || len(key) > maxKeyLen {
		return "", invalidf("The Idempotency-Key is %d characters long; it must have 1 to %d visible ASCII characters (0x21-0x7E), e.g. a UUID.", len(key), maxKeyLen)
	}
	for i := range len(key) {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return "", invalidf("The Idempotency-Key has the byte 0x%02X at position %d; it must have 1 to %d visible ASCII characters (0x21-0x7E, no spaces), e.g. a UUID.", c, i+1, maxKeyLen)
		}
	}
	return key, nil
}

// idempotencyKeys remembers, per Idempotency-Key, the message a POST /ping
// made for it, so that a retry with the same key publishes that message
// again, with the same id, or, once it is confirmed, just answers with it.
//
// A failed publish (a 503) is not an answer to repeat: the retry publishes
// again. It publishes the same message, though, because the failed one may
// have been stored after all (a confirm that timed out, a connection lost
// after the broker took the message): service02 stores each id once, so
// the copy is dropped instead of becoming a second entry in /pong.
//
// A key is remembered for its TTL from its first request, at most max keys
// (beyond, the oldest are forgotten early). The map lives in memory: a
// restart of service01 forgets every key.
//
// The entries are kept in a list in the order they were made. All have the
// same TTL, so that is also the order they expire in: expiring and evicting
// both take from the front, in O(1).
type idempotencyKeys struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*keyEntry
	order   *list.List // of *keyEntry, oldest first
}

// keyEntry is one key's message and where its publishing stands.
type keyEntry struct {
	key       string
	m         message
	confirmed bool    // the broker confirmed m: repeat the 202
	flight    *flight // the publish in progress, if any
	expires   time.Time
	elem      *list.Element // in order
}

// flight is one attempt to publish a key's message; the requests with the
// same key that come meanwhile wait for it instead of publishing too.
type flight struct {
	done chan struct{} // closed once err is set
	err  error
}

func newIdempotencyKeys(ttl time.Duration, max int) *idempotencyKeys {
	return &idempotencyKeys{
		ttl:     ttl,
		max:     max,
		now:     time.Now,
		entries: make(map[string]*keyEntry),
		order:   list.New(),
	}
}

// keyReusedError is a key sent again with another msg. Its text is the
// problem detail the client gets.
type keyReusedError struct {
	key string
}

func (e *keyReusedError) Error() string {
	return fmt.Sprintf("The Idempotency-Key %q was already used for a different msg; a key stands for exactly one message. Send a new key with a new message, or the same msg to retry the first.", e.key)
}

// publish publishes m through pub and returns it. With an Idempotency-Key
// (key not ""), it publishes what the key stands for instead, as do says.
func (k *idempotencyKeys) publish(ctx context.Context, key string, m message, pub publisher) (_ message, replayed bool, _ error) {
	publish := func(m message) error { return pub.Publish(ctx, m) }
	if key == "" {
		return m, false, publish(m)
	}
	return k.do(ctx, key, m, publish)
}

// do publishes the message key stands for and returns it: m for a new
// key, else the message made for the key's first request. A confirmed one
// is not published again: replayed is then true. Concurrent calls with the
// same key publish once; the others wait for that attempt and share its
// outcome, failure included. A key known with another msg is a
// *keyReusedError.
func (k *idempotencyKeys) do(ctx context.Context, key string, m message, publish func(message) error) (_ message, replayed bool, _ error) {
	k.mu.Lock()
	k.expire()
	e, ok := k.entries[key]
	switch {
	case ok && e.m.Msg != m.Msg:
		k.mu.Unlock()
		return message{}, false, &keyReusedError{key: key}
	case ok && e.confirmed:
		k.mu.Unlock()
		return e.m, true, nil
	case ok && e.flight != nil:
		f := e.flight
		k.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			// The client has gone; nobody reads the answer.
			return message{}, false, ctx.Err()
		}
		return e.m, f.err == nil, f.err
	case !ok:
		e = &keyEntry{key: key, m: m, expires: k.now().Add(k.ttl)}
		e.elem = k.order.PushBack(e)
		k.entries[key] = e
		for k.order.Len() > k.max {
			k.remove(k.order.Front())
		}
	}
	// A new key, or one whose last publish failed: publish its message.
	f := &flight{done: make(chan struct{})}
	e.flight = f
	k.mu.Unlock()

	err := publish(e.m)

	k.mu.Lock()
	f.err = err
	e.flight = nil
	e.confirmed = err == nil
	k.mu.Unlock()
	close(f.done)
	return e.m, false, err
}

// expire forgets the keys whose TTL is over; the caller holds k.mu.
func (k *idempotencyKeys) expire() {
	now := k.now()
	for front := k.order.Front(); front != nil && !now.Before(front.Value.(*keyEntry).expires); front = k.order.Front() {
		k.remove(front)
	}
}

// remove forgets the key in elem; the caller holds k.mu. A publish in
// progress for it still completes, unremembered.
func (k *idempotencyKeys) remove(elem *list.Element) {
	e := k.order.Remove(elem).(*keyEntry)
	delete(k.entries, e.key)
}

// Len is the number of keys remembered.
func (k *idempotencyKeys) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}
