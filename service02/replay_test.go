package main

// Integration tests of the replay of the event log (replay.go, marker.go),
// against the shared RabbitMQ node.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// startReplayingConsumer runs a consumer with SERVICE02_REPLAY on, logging
// into the returned buffer.
func startReplayingConsumer(tb testing.TB, cfg config) (*runningConsumer, *syncBuffer) {
	tb.Helper()
	cfg.Replay = true
	logs := &syncBuffer{}
	store := NewStore(cfg.StoreCapacity)
	m := newMetrics(store)
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConsumer{
		consumer: newConsumer(cfg, "service02-test", store, m, slog.New(slog.NewJSONHandler(logs, nil))),
		store:    store, metrics: m, cancel: cancel, done: make(chan error, 1),
	}
	go func() { rc.done <- rc.Run(ctx) }()
	tb.Cleanup(func() { rc.stop(tb) })
	return rc, logs
}

// storedIDs returns the ids in the store, oldest first.
func storedIDs(s *Store) []string {
	msgs, _, _ := s.Page(0, s.Len())
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// TestReplayRebuildsTheStore is the lesson's promise: a service02 that
// starts anew, with the queue already drained by the one before it, holds
// again every valid ping of the log, each once and in the order published;
// it skips every invalid event with a log line and a count, and meets the
// marker an earlier replay left without stopping there.
func TestReplayRebuildsTheStore(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	mustDeclareTopology(t, r, cfg)

	var bodies [][]byte
	var want []string
	bad := map[int]string{ // position in the log -> why it is invalid
		3:  "not a JSON object",
		7:  `"id" is missing`,
		11: "over the 65536-byte limit",
	}
	for i := range 300 {
		switch why := bad[i]; {
		case why == "not a JSON object":
			bodies = append(bodies, []byte("not json"))
		case why == `"id" is missing`:
			bodies = append(bodies, []byte(`{"msg":"hello","date":"2026-12-02T10:00:00Z"}`))
		case why != "":
			bodies = append(bodies, []byte(`{"id":"big","msg":"`+strings.Repeat("x", 1<<20)+`","date":"2026-12-02T10:00:00Z"}`))
		case i == 20:
			// A member service02 does not know: accepted, as the queue
			// consumer accepts it (message-format.md).
			id := fmt.Sprintf("replay-%03d", i)
			bodies = append(bodies, []byte(`{"id":"`+id+`","msg":"hello","date":"2026-12-02T10:00:00Z","color":"blue"}`))
			want = append(want, id)
		default:
			id := fmt.Sprintf("replay-%03d", i)
			bodies = append(bodies, validBody(id))
			want = append(want, id)
		}
	}
	newTestPublisher(t, r, cfg).mustPublishAll(bodies)

	// The service02 before: it consumes the queue, dead-letters the
	// invalid messages and acks the rest, and dies. The queue is empty
	// now; only the log still has the pings.
	first := startConsumer(t, cfg)
	waitFor(t, 60*time.Second, "the first consumer to store every valid ping", func() bool { return first.store.Len() == len(want) })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the queue to be empty", func() bool { return queueDepth(t, r, cfg.Queue) == 0 })

	// Twice: the second replay reads past the first one's marker.
	for round := 1; round <= 2; round++ {
		rc, logs := startReplayingConsumer(t, cfg)
		rc.waitReady(t)
		if got := storedIDs(rc.store); !slices.Equal(got, want) {
			t.Fatalf("round %d: the store holds %d pings %v..., want the %d valid ones of the log in order", round, len(got), head(got, 5), len(want))
		}
		if got := metricValue(t, rc.metrics, "service02_log_events_replayed_total"); got != float64(len(want)) {
			t.Errorf("round %d: service02_log_events_replayed_total = %v, want %d", round, got, len(want))
		}
		if got := metricValue(t, rc.metrics, "service02_log_events_skipped_total"); got != float64(len(bad)) {
			t.Errorf("round %d: service02_log_events_skipped_total = %v, want %d", round, got, len(bad))
		}
		if got := metricValue(t, rc.metrics, "service02_messages_consumed_total"); got != 0 {
			t.Errorf("round %d: service02_messages_consumed_total = %v, want 0: the queue was empty", round, got)
		}
		var skipped []map[string]any
		for line := range strings.Lines(logs.String()) {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "invalid event skipped on replay" {
				skipped = append(skipped, entry)
			}
		}
		if len(skipped) != len(bad) {
			t.Fatalf("round %d: %d lines say an event was skipped, want %d:\n%s", round, len(skipped), len(bad), logs.String())
		}
		for _, entry := range skipped {
			offset, _ := entry["offset"].(float64)
			reason, _ := entry["reason"].(string)
			// The log's first offset is 0: nothing was removed yet.
			if why, ok := bad[int(offset)]; !ok || !strings.Contains(reason, why) {
				t.Errorf("round %d: skipped at offset %v because %q, want one of %v", round, entry["offset"], reason, bad)
			}
		}
		if !strings.Contains(logs.String(), `"msg":"event log replayed"`) {
			t.Errorf("round %d: no line says the log was replayed:\n%s", round, logs.String())
		}
		if err := rc.stop(t); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplayUnderLoadLosesNothing starts a replaying consumer while pings
// keep coming: those published before its marker come from the log, those
// after from the queue, and a ping in both is stored once.
func TestReplayUnderLoadLosesNothing(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	mustDeclareTopology(t, r, cfg)
	pub := newTestPublisher(t, r, cfg)

	// A first consumer stores and acks the first 500; the log has them.
	var sent []string
	publish := func(n int) {
		bodies := make([][]byte, n)
		for i := range bodies {
			id := fmt.Sprintf("load-%05d", len(sent))
			sent = append(sent, id)
			bodies[i] = validBody(id)
		}
		pub.mustPublishAll(bodies)
	}
	publish(500)
	first := startConsumer(t, cfg)
	waitFor(t, 60*time.Second, "the first consumer to store 500", func() bool { return first.store.Len() == 500 })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	// Publish in bursts of 20 while the replaying consumer starts.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				publish(20)
			}
		}
	})
	rc, _ := startReplayingConsumer(t, cfg)
	rc.waitReady(t)
	time.Sleep(200 * time.Millisecond) // a little more load once it consumes the queue
	close(stop)
	wg.Wait()

	waitFor(t, 60*time.Second, fmt.Sprintf("the store to hold all %d pings", len(sent)), func() bool { return rc.store.Len() >= len(sent) })
	got := storedIDs(rc.store)
	seen := make(map[string]bool, len(got))
	for _, id := range got {
		seen[id] = true
	}
	var lost []string
	for _, id := range sent {
		if !seen[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 || len(got) != len(sent) {
		t.Errorf("stored %d of %d pings; lost %v", len(got), len(sent), head(lost, 10))
	}
	replayed := metricValue(t, rc.metrics, "service02_log_events_replayed_total")
	consumed := metricValue(t, rc.metrics, "service02_messages_consumed_total")
	if replayed < 500 || replayed+consumed != float64(len(sent)) {
		t.Errorf("replayed %v + consumed %v from the queue, want at least 500 replayed and %d in all", replayed, consumed, len(sent))
	}
}

// TestReplayShowsProgressInReadiness holds the marker back with a memory
// alarm: the consumer is not ready, and says it is replaying, until the
// broker confirms the marker and the replay reaches it.
func TestReplayShowsProgressInReadiness(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	mustDeclareTopology(t, r, cfg)
	newTestPublisher(t, r, cfg).mustPublish(validBody("progress-1"))

	setWatermark := func(v string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := r.Ctl(ctx, "set_vm_memory_high_watermark", v); err != nil {
			t.Fatalf("set_vm_memory_high_watermark %s: %v: %s", v, err, out)
		}
	}
	setWatermark("0")
	t.Cleanup(func() { setWatermark("0.4") })

	rc, _ := startReplayingConsumer(t, cfg)
	var why error
	waitFor(t, 30*time.Second, "readiness to say the log is being replayed", func() bool {
		why = rc.Ready()
		return why != nil && strings.Contains(why.Error(), "replaying the event log")
	})
	time.Sleep(500 * time.Millisecond)
	if err := rc.Ready(); err == nil {
		t.Fatal("ready while the marker cannot be confirmed")
	}
	setWatermark("0.4")
	rc.waitReady(t)
	if got := storedIDs(rc.store); !slices.Equal(got, []string{"progress-1"}) {
		t.Errorf("the store holds %v, want [progress-1]", got)
	}
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }

// TestReplayAfterRetention fills a log whose retention is a few segments of
// a few kilobytes: RabbitMQ removes the oldest segments, and a replay
// rebuilds exactly the pings still in the log, the newest, with none
// missing in between. What retention removed is gone for good.
func TestReplayAfterRetention(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	cfg.LogMaxBytes, cfg.LogSegmentBytes = 20_000, 4_000
	mustDeclareTopology(t, r, cfg)
	pub := newTestPublisher(t, r, cfg)
	var sent []string
	for batch := range 10 {
		bodies := make([][]byte, 50)
		for i := range bodies {
			id := fmt.Sprintf("retention-%03d-%02d", batch, i)
			sent = append(sent, id)
			bodies[i] = validBody(id)
		}
		pub.mustPublishAll(bodies)
	}
	// The service02 before stores them all from the queue, and dies.
	first := startConsumer(t, cfg)
	waitFor(t, 60*time.Second, "the first consumer to store every ping", func() bool { return first.store.Len() == len(sent) })
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	rc, _ := startReplayingConsumer(t, cfg)
	rc.waitReady(t)
	got := storedIDs(rc.store)
	if len(got) == 0 || len(got) >= len(sent) {
		t.Fatalf("the replay stored %d of the %d pings sent, want fewer, and some: retention keeps about 20 kB", len(got), len(sent))
	}
	if want := sent[len(sent)-len(got):]; !slices.Equal(got, want) {
		t.Errorf("the replay stored %v ... %v, want the newest %d pings in order, %v ... %v",
			head(got, 2), got[len(got)-2:], len(got), head(want, 2), want[len(want)-2:])
	}
}
