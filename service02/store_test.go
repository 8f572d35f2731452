package main

import (
	"encoding/base64"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testMessage returns a valid message whose id is id.
func testMessage(id string) message {
	return message{ID: id, Msg: "hello " + id, Date: "2026-11-22T09:15:02.123456Z", RequestID: "req-" + id}
}

// mustAdd adds messages with the ids "m1".."mN" (from, ..., to) and fails the
// test when one is not added.
func mustAdd(tb testing.TB, s *Store, from, to int) {
	tb.Helper()
	for i := from; i <= to; i++ {
		if !s.Add(testMessage("m" + strconv.Itoa(i))) {
			tb.Fatalf("Add(m%d) = false, want true", i)
		}
	}
}

// pageIDs returns the ids of msgs.
func pageIDs(msgs []record) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func idRange(from, to int) []string {
	var ids []string
	for i := from; i <= to; i++ {
		ids = append(ids, "m"+strconv.Itoa(i))
	}
	return ids
}

func equalIDs(a, b []string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestStoreAddGet(t *testing.T) {
	s := NewStore(10)
	received := time.Date(2026, 11, 22, 9, 15, 3, 987654321, time.FixedZone("CET", 3600))
	s.now = func() time.Time { return received }

	m := testMessage("a")
	if !s.Add(m) {
		t.Fatal("Add = false for a new id, want true")
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	got, ok := s.Get("a")
	if !ok {
		t.Fatal(`Get("a") found nothing`)
	}
	if got.message != m {
		t.Errorf("Get = %+v, want %+v", got.message, m)
	}
	// Kept to the microsecond, in UTC.
	if want := received.Truncate(time.Microsecond).UTC(); !got.ReceivedAt().Equal(want) || got.ReceivedAt().Location() != time.UTC {
		t.Errorf("ReceivedAt = %v, want %v", got.ReceivedAt(), want)
	}
	if _, ok := s.Get("b"); ok {
		t.Error(`Get("b") found a message never added`)
	}
}

func TestStoreDeduplicates(t *testing.T) {
	s := NewStore(10)
	first := testMessage("a")
	again := first
	again.Msg = "a redelivery with another text"
	if !s.Add(first) {
		t.Fatal("first Add = false, want true")
	}
	if s.Add(again) {
		t.Error("second Add of the same id = true, want false")
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1", s.Len())
	}
	if got, _ := s.Get("a"); got.Msg != first.Msg {
		t.Errorf("stored msg = %q, want the first one %q", got.Msg, first.Msg)
	}
	if msgs, _, _ := s.Page(0, 10); len(msgs) != 1 {
		t.Errorf("Page holds %d messages, want 1", len(msgs))
	}
}

func TestStoreEvictsOldestAtCapacity(t *testing.T) {
	s := NewStore(3)
	mustAdd(t, s, 1, 5)

	if s.Len() != 3 {
		t.Errorf("Len = %d, want 3", s.Len())
	}
	if s.Evicted() != 2 {
		t.Errorf("Evicted = %d, want 2", s.Evicted())
	}
	for _, id := range []string{"m1", "m2"} {
		if _, ok := s.Get(id); ok {
			t.Errorf("Get(%s) found an evicted message", id)
		}
	}
	for _, id := range []string{"m3", "m4", "m5"} {
		if _, ok := s.Get(id); !ok {
			t.Errorf("Get(%s) found nothing", id)
		}
	}
	msgs, _, more := s.Page(0, 10)
	if want := idRange(3, 5); !equalIDs(pageIDs(msgs), want) || more {
		t.Errorf("Page(0, 10) = %v more=%v, want %v more=false", pageIDs(msgs), more, want)
	}
	// An evicted id is forgotten: it can be stored again.
	if !s.Add(testMessage("m1")) {
		t.Error("Add of an evicted id = false, want true")
	}
}

func TestStoreRingHasNoSpareSlotsWhenFull(t *testing.T) {
	s := NewStore(100)
	mustAdd(t, s, 1, 150)
	if len(s.ring) != 100 || cap(s.ring) != 100 {
		t.Errorf("ring len %d cap %d, want 100 and 100", len(s.ring), cap(s.ring))
	}
}

func TestStorePage(t *testing.T) {
	s := NewStore(10)
	if msgs, next, more := s.Page(0, 5); len(msgs) != 0 || next != 0 || more {
		t.Errorf("empty store: Page = %v, %d, %v; want nothing", pageIDs(msgs), next, more)
	}
	mustAdd(t, s, 1, 7)

	tests := []struct {
		after    uint64
		limit    int
		wantIDs  []string
		wantNext uint64
		wantMore bool
	}{
		{0, 3, idRange(1, 3), 3, true},
		{3, 3, idRange(4, 6), 6, true},
		{6, 3, idRange(7, 7), 7, false},
		{7, 3, nil, 7, false},
		{0, 7, idRange(1, 7), 7, false},
		{0, 1000, idRange(1, 7), 7, false},
		{2, 0, nil, 2, false},
		{99, 3, nil, 99, false},
	}
	for _, tt := range tests {
		msgs, next, more := s.Page(tt.after, tt.limit)
		if !equalIDs(pageIDs(msgs), tt.wantIDs) || next != tt.wantNext || more != tt.wantMore {
			t.Errorf("Page(%d, %d) = %v, %d, %v; want %v, %d, %v",
				tt.after, tt.limit, pageIDs(msgs), next, more, tt.wantIDs, tt.wantNext, tt.wantMore)
		}
	}
}

func TestStorePageAcrossEviction(t *testing.T) {
	s := NewStore(4)
	mustAdd(t, s, 1, 2)
	_, cursor, _ := s.Page(0, 1) // a client has seen m1
	mustAdd(t, s, 3, 9)          // m1..m5 are evicted; the ring has wrapped

	// The cursor's message is gone: continue from the oldest still held.
	msgs, next, more := s.Page(cursor, 3)
	if want := idRange(6, 8); !equalIDs(pageIDs(msgs), want) || !more {
		t.Fatalf("Page after an evicted cursor = %v more=%v, want %v more=true", pageIDs(msgs), more, want)
	}
	msgs, _, more = s.Page(next, 3)
	if want := idRange(9, 9); !equalIDs(pageIDs(msgs), want) || more {
		t.Errorf("next page = %v more=%v, want %v more=false", pageIDs(msgs), more, want)
	}
	// Get still finds every held message after the wrap.
	for _, id := range idRange(6, 9) {
		if m, ok := s.Get(id); !ok || m.ID != id {
			t.Errorf("Get(%s) = %q, %v", id, m.ID, ok)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []struct{ epoch, seq uint64 }{
		{0, 1}, {1, 2}, {0xdeadbeefcafef00d, 12345}, {math.MaxUint64, math.MaxUint64},
	} {
		s := encodeCursor(c.epoch, c.seq)
		epoch, seq, err := decodeCursor(s)
		if err != nil || epoch != c.epoch || seq != c.seq {
			t.Errorf("decodeCursor(encodeCursor(%x, %d)) = %x, %d, %v", c.epoch, c.seq, epoch, seq, err)
		}
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	valid := encodeCursor(0xdeadbeefcafef00d, 42)
	for name, s := range map[string]string{
		"empty":             "",
		"not base64":        "not a cursor!",
		"padded":            valid + "=",
		"std alphabet":      "+/+/",
		"no separator":      b64([]byte("deadbeefcafef00d42")),
		"short epoch":       b64([]byte("deadbeef:42")),
		"upper-case epoch":  b64([]byte("DEADBEEFCAFEF00D:42")),
		"seq zero":          b64([]byte("deadbeefcafef00d:0")),
		"leading zero":      b64([]byte("deadbeefcafef00d:042")),
		"signed seq":        b64([]byte("deadbeefcafef00d:+42")),
		"seq overflow":      b64([]byte("deadbeefcafef00d:18446744073709551616")),
		"seq not a number":  b64([]byte("deadbeefcafef00d:x")),
		"trailing junk":     b64([]byte("deadbeefcafef00d:42:1")),
		"very long":         b64(make([]byte, 1000)),
		"valid plus a char": valid + "A",
	} {
		if _, _, err := decodeCursor(s); err == nil {
			t.Errorf("%s: decodeCursor(%q) accepted it", name, s)
		}
	}
}

func TestStoreConcurrentUse(t *testing.T) {
	const writers, perWriter, capacity = 4, 500, 1000
	s := NewStore(capacity)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				// Every id twice, from two writers: one Add must lose.
				s.Add(testMessage(fmt.Sprintf("w%d-%d", w/2, i)))
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			var after uint64
			for range 200 {
				msgs, next, _ := s.Page(after, 50)
				for _, m := range msgs {
					if got, ok := s.Get(m.ID); ok && got.ID != m.ID {
						t.Errorf("Get(%s) returned %s", m.ID, got.ID)
					}
				}
				after = next
				s.Len()
			}
		})
	}
	wg.Wait()

	// 2 distinct writer groups x 500 ids = 1000 distinct messages.
	if s.Len() != capacity {
		t.Errorf("Len = %d, want %d", s.Len(), capacity)
	}
	msgs, _, _ := s.Page(0, capacity)
	seen := make(map[string]bool)
	for _, m := range msgs {
		if seen[m.ID] {
			t.Fatalf("id %s stored twice", m.ID)
		}
		seen[m.ID] = true
	}
}

// BenchmarkStoreFull fills a store of 1 000 000 messages and reports the heap
// it holds per message (the goal is at most 400 bytes). It is a benchmark,
// not a test: make test does not run it. Run it with
// go test -run '^$' -bench StoreFull -benchtime 1x
func BenchmarkStoreFull(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := NewStore(n)
		for i := range n + n/2 { // evict a third of them too
			id := fmt.Sprintf("%08x-5d2a-4e8b-9c1f-6a3d2e1b0c9f", i)
			s.Add(message{ID: id, Msg: "hello", Date: "2026-11-22T09:15:02.123456Z", RequestID: id[:8] + id[:8] + id[:8] + id[:8]})
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/msg")
		runtime.KeepAlive(s)
	}
}
