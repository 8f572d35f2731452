package main

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// record is a stored message: one slot of the store's ring.
type record struct {
	message
	// receivedAt is when the store got the message, in Unix microseconds:
	// 8 bytes, where a time.Time takes 24 and holds a pointer the garbage
	// collector would have to follow in every slot.
	receivedAt int64
}

// ReceivedAt is when the store got the message.
func (r record) ReceivedAt() time.Time { return time.UnixMicro(r.receivedAt).UTC() }

// Store keeps the newest messages in memory, at most capacity of them, in the
// order they arrived, and at most once per id.
//
// Every message added gets the next sequence number (1, 2, ...). The
// messages held always have consecutive numbers, so a number is never stored:
// the oldest message's is enough to find any other in the ring. The memory
// per message is one record (four string headers and an int64) plus one map
// entry plus the strings' bytes; the id's bytes are shared by both.
type Store struct {
	capacity int
	epoch    uint64
	now      func() time.Time

	mu      sync.RWMutex
	ring    []record          // grows up to capacity, then wraps around
	head    int               // index in ring of the oldest message
	last    uint64            // sequence number of the newest message, 0 before the first
	ids     map[string]uint64 // id -> sequence number, for every message held
	evicted uint64
}

// NewStore returns an empty store that keeps at most capacity (>= 1)
// messages.
func NewStore(capacity int) *Store {
	var b [8]byte
	rand.Read(b[:])
	return &Store{
		capacity: capacity,
		epoch:    binary.BigEndian.Uint64(b[:]),
		now:      time.Now,
		ids:      make(map[string]uint64, min(capacity, 1024)),
	}
}

// Add stores m and reports true, or reports false without storing it when a
// message with the same id is already stored (a redelivery, or a producer
// that published twice). When the store is full, the oldest message is
// evicted to make room.
func (s *Store) Add(m message) (added bool) {
	r := record{message: m, receivedAt: s.now().UnixMicro()}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[m.ID]; ok {
		return false
	}
	if len(s.ring) < s.capacity {
		s.grow()
		s.ring = append(s.ring, r)
	} else {
		delete(s.ids, s.ring[s.head].ID)
		s.ring[s.head] = r
		s.head = (s.head + 1) % s.capacity
		s.evicted++
	}
	s.last++
	s.ids[m.ID] = s.last
	return true
}

// grow makes room for one more record before the ring first fills up. It
// doubles the ring like append would, but never beyond capacity, so that a
// full store holds no unused slots.
func (s *Store) grow() {
	if len(s.ring) < cap(s.ring) {
		return
	}
	ring := make([]record, len(s.ring), min(max(2*cap(s.ring), 64), s.capacity))
	copy(ring, s.ring) // the ring has not wrapped yet: head is 0
	s.ring = ring
}

// first is the sequence number of the oldest message held; the caller holds
// s.mu.
func (s *Store) first() uint64 { return s.last - uint64(len(s.ring)) + 1 }

// at returns the message with sequence number seq, which the caller checked
// is held; the caller holds s.mu.
func (s *Store) at(seq uint64) record {
	return s.ring[(s.head+int(seq-s.first()))%len(s.ring)]
}

// Get returns the stored message with the given id.
func (s *Store) Get(id string) (record, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seq, ok := s.ids[id]
	if !ok {
		return record{}, false
	}
	return s.at(seq), true
}

// Page returns, oldest first, at most limit messages whose sequence numbers
// are above after (0 starts from the oldest). When the message numbered after
// has been evicted, it starts from the oldest message still held. next is the
// sequence number of the last message returned (after itself when none is),
// and more reports whether newer messages follow it.
func (s *Store) Page(after uint64, limit int) (msgs []record, next uint64, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.ring) == 0 || limit <= 0 || after >= s.last {
		return nil, after, false
	}
	from := max(after+1, s.first())
	to := min(s.last, from+uint64(limit)-1)
	msgs = make([]record, 0, to-from+1)
	for seq := from; seq <= to; seq++ {
		msgs = append(msgs, s.at(seq))
	}
	return msgs, to, to < s.last
}

// Epoch tells this store's sequence numbers from another's: it is random,
// fixed when the store is made. The numbers restart at 1 with every store,
// that is every time service02 starts, so a number alone cannot tell a
// client's cursor from before a restart apart from a current one.
func (s *Store) Epoch() uint64 { return s.epoch }

// Capacity is the most messages the store keeps.
func (s *Store) Capacity() int { return s.capacity }

// Len is the number of messages held.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ring)
}

// Evicted is the number of messages evicted to make room since the store was
// made.
func (s *Store) Evicted() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.evicted
}
