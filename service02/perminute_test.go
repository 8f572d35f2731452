package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestStreamOffsetSpec(t *testing.T) {
	now := time.Date(2026, 12, 2, 18, 45, 0, 0, time.UTC)
	tests := []struct {
		from string
		want any
	}{
		{"first", "first"},
		{"2026-12-02T18:40:00Z", time.Date(2026, 12, 2, 18, 40, 0, 0, time.UTC)},
		{"10m", now.Add(-10 * time.Minute)},
	}
	for _, tt := range tests {
		got, err := streamOffsetSpec(tt.from, now)
		if err != nil {
			t.Errorf("%q: %v", tt.from, err)
			continue
		}
		if gt, ok := got.(time.Time); ok {
			if !gt.Equal(tt.want.(time.Time)) {
				t.Errorf("%q: %v, want %v", tt.from, got, tt.want)
			}
		} else if got != tt.want {
			t.Errorf("%q: %v, want %v", tt.from, got, tt.want)
		}
	}
	for _, bad := range []string{"", "last", "-10m", "yesterday"} {
		if _, err := streamOffsetSpec(bad, now); err == nil || !strings.Contains(err.Error(), "-from must be") {
			t.Errorf("%q: %v, want the -from error", bad, err)
		}
	}
}

// dated is a valid ping sent at date.
func dated(id, date string) []byte {
	return []byte(`{"id":"` + id + `","msg":"hello","date":"` + date + `"}`)
}

// TestPerMinute builds the second read model from a log it never saw
// written: pings counted by the minute of their date, an invalid event and
// a replay marker skipped; then from a time, the later pings only.
func TestPerMinute(t *testing.T) {
	r := mustRabbit(t)
	cfg := testTopologyConfig(t, r)
	mustDeclareTopology(t, r, cfg)
	pub := newTestPublisher(t, r, cfg)
	pub.mustPublishAll([][]byte{
		dated("a", "2026-12-02T10:00:01.000001Z"),
		dated("b", "2026-12-02T10:00:59.999999Z"),
		[]byte("not json"),
		dated("c", "2026-12-02T10:02:00Z"),
	})
	// A replaying service02 leaves its marker in the log.
	rc, _ := startReplayingConsumer(t, cfg)
	rc.waitReady(t)
	if err := rc.stop(t); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	if err := printPerMinute(context.Background(), cfg.RabbitMQConfig, "first", &out); err != nil {
		t.Fatal(err)
	}
	want := "minute (UTC)       pings\n" +
		"2026-12-02 10:00       2\n" +
		"2026-12-02 10:02       1\n" +
		fmt.Sprintf("4 events read from %s, offsets 0 to 3; 1 invalid skipped\n", cfg.LogStream)
	if out.String() != want {
		t.Errorf("-per-minute printed\n%s\nwant\n%s", out.String(), want)
	}

	// Time travel: from a moment between two batches. AMQP timestamps
	// have whole seconds, so the batches are more than a second apart.
	time.Sleep(2100 * time.Millisecond)
	between := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1100 * time.Millisecond)
	pub.mustPublishAll([][]byte{dated("d", "2026-12-02T11:00:00Z"), dated("e", "2026-12-02T11:00:30Z")})
	out.Reset()
	if err := printPerMinute(context.Background(), cfg.RabbitMQConfig, between.Format(time.RFC3339), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "minute (UTC)       pings\n2026-12-02 11:00       2\n2 events read from") {
		t.Errorf("-per-minute -from %s printed\n%s\nwant only the two later pings", between.Format(time.RFC3339), out.String())
	}
}

// TestRunPerMinuteBadFrom: a -from service02 cannot read is a sentence
// saying what it takes, before any connection is tried.
func TestRunPerMinuteBadFrom(t *testing.T) {
	err := run(context.Background(), []string{"service02", "-per-minute", "-from", "yesterday"},
		getenvFrom(map[string]string{"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": "1"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `-from must be "first", a time such as 2026-12-02T18:40:00Z, or a duration ago such as 10m; got "yesterday"`) {
		t.Errorf("run -per-minute -from yesterday: %v", err)
	}
}
