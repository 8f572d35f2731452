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
// published, so that a retry with the same key answers with the same
// message instead of publishing a new one.
//
// A key is remembered from its first request until its TTL expires or more
// than max keys are remembered (the oldest go first), and only when its
// publish succeeded: a failed one is forgotten at once, so that a retry can
// succeed. The map lives in memory: a restart of service01 forgets every key.
//
// The entries are kept in a list in the order they were confirmed. All have
// the same TTL, so that is also the order they expire in: expiring and
// evicting both take from the front, in O(1).
type idempotencyKeys struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*keyEntry // every key remembered or being published
	order   *list.List           // of *keyEntry, confirmed ones only, oldest first
}

// keyEntry is one key's message and the outcome of publishing it.
type keyEntry struct {
	key  string
	m    message
	done chan struct{} // closed once err is set
	err  error         // the publish's error; nil when it was confirmed

	expires time.Time     // once confirmed
	elem    *list.Element // in order, once confirmed
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

// do publishes m with publish unless key already has a message, and returns
// the message the key stands for: m, or the one published for the key
// before (replayed is then true). Concurrent calls with the same key
// publish once: the others wait for its outcome and share it, failure
// included. A key known with another msg is a *keyReusedError.
func (k *idempotencyKeys) do(ctx context.Context, key string, m message, publish func(message) error) (_ message, replayed bool, _ error) {
	k.mu.Lock()
	k.expire()
	if e, ok := k.entries[key]; ok {
		k.mu.Unlock()
		if e.m.Msg != m.Msg {
			return message{}, false, &keyReusedError{key: key}
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			// The client has gone; nobody reads the answer.
			return message{}, false, ctx.Err()
		}
		return e.m, true, e.err
	}
	e := &keyEntry{key: key, m: m, done: make(chan struct{})}
	k.entries[key] = e
	k.mu.Unlock()

	err := publish(m)

	k.mu.Lock()
	e.err = err
	if err != nil {
		delete(k.entries, key)
	} else {
		e.expires = k.now().Add(k.ttl)
		e.elem = k.order.PushBack(e)
		for k.order.Len() > k.max {
			k.remove(k.order.Front())
		}
	}
	k.mu.Unlock()
	close(e.done)
	return m, false, err
}

// expire forgets the keys whose TTL is over; the caller holds k.mu.
func (k *idempotencyKeys) expire() {
	now := k.now()
	for front := k.order.Front(); front != nil && !now.Before(front.Value.(*keyEntry).expires); front = k.order.Front() {
		k.remove(front)
	}
}

// remove forgets the confirmed key in elem; the caller holds k.mu.
func (k *idempotencyKeys) remove(elem *list.Element) {
	e := k.order.Remove(elem).(*keyEntry)
	delete(k.entries, e.key)
}

// Len is the number of keys remembered or being published.
func (k *idempotencyKeys) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}
