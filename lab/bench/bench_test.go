package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// TestSmoke runs every row of the benchmark for a moment with tiny sizes,
// so that make bench cannot rot. It checks that each row produced numbers
// and no errors; it times nothing.
func TestSmoke(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	o := SmokeOptions(root)
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}

	check := func(name string, r Result) {
		t.Helper()
		if len(r.Latencies) == 0 || r.Rate() <= 0 || r.Quantile(0.99) <= 0 {
			t.Errorf("%s: no measurements: %d samples, rate %v", name, len(r.Latencies), r.Rate())
		}
		if r.Errors > 0 {
			t.Errorf("%s: %d errors, the first: %v", name, r.Errors, r.FirstErr)
		}
	}
	for _, c := range o.Clients {
		check("S", rep.S[c])
		check("P", rep.P[c])
	}
	if len(rep.Queues) != len(o.QueueTypes) {
		t.Fatalf("measured %d queue types, want %d", len(rep.Queues), len(o.QueueTypes))
	}
	for _, q := range rep.Queues {
		for _, c := range o.Clients {
			check(q.Type+" R", q.R[c])
			check(q.Type+" R pipelined", q.RP[c])
			check(q.Type+" E", q.E[c])
		}
		if len(q.Open) != len(o.Fractions) {
			t.Errorf("%s: %d open-loop points, want %d", q.Type, len(q.Open), len(o.Fractions))
		}
		for _, p := range q.Open {
			check(q.Type+" E open", p.E)
			if n, want := len(p.Visible.Latencies), len(p.E.Latencies); n != want {
				t.Errorf("%s visible at %.0f%%: %d messages found stored, want the %d sent", q.Type, 100*p.Fraction, n, want)
			}
		}
		if q.RAtGoal == nil {
			t.Errorf("%s: no R open-loop point", q.Type)
		} else {
			check(q.Type+" R open", *q.RAtGoal)
		}
		if len(q.GoalE) != o.GoalRuns || len(q.GoalR) != o.GoalRuns || slices.Contains(q.GoalE, 0) || slices.Contains(q.GoalR, 0) {
			t.Errorf("%s: p99s at the goal's load %v (E) and %v (R), want %d of each, none 0", q.Type, q.GoalE, q.GoalR, o.GoalRuns)
		}
		if q.Drain <= 0 || q.DrainRaw <= 0 {
			t.Errorf("%s: drain rates %v (service02) and %v (raw), want both above 0", q.Type, q.Drain, q.DrainRaw)
		}
		// The empty store's heap may round down to 0 MiB; the filled ones'
		// may not.
		if len(q.Memory) != len(o.MemorySizes) {
			t.Errorf("%s: %d memory points, want %d", q.Type, len(q.Memory), len(o.MemorySizes))
		}
		for _, m := range q.Memory {
			if m.Live <= 0 || m.Live < q.HeapBase {
				t.Errorf("%s: no live heap measured at %d stored", q.Type, m.Stored)
			}
		}
	}
	if rep.Cluster == nil {
		t.Error("no cluster rows")
	} else {
		check("R cluster", rep.Cluster.R)
		check("E cluster", rep.Cluster.E)
	}
	if len(rep.Logging) != len(loggingSetups) {
		t.Errorf("%d logging rows, want %d", len(rep.Logging), len(loggingSetups))
	}
	for _, l := range rep.Logging {
		check("E logging: "+l.Setup.Name, l.E)
	}
	table := rep.Table()
	for _, row := range []string{"| E logging: as shipped |", "| E logging: neither |", "| S |", "| P |", "| R |", "| R pipelined |", "| E |", "| E open |", "| visible |", "| R open |", "| drain |", "| drain raw |", "| memory |", "| R cluster |", "| E cluster |"} {
		if !strings.Contains(table, row) {
			t.Errorf("the table has no %q row:\n%s", row, table)
		}
	}
	if doc := rep.Markdown("make bench"); !strings.Contains(doc, table) || !strings.Contains(doc, rep.Versions.RabbitMQ) {
		t.Errorf("the report lacks the table or the versions:\n%s", doc)
	}
	t.Logf("\n%s", rep.Summary())
}

func TestQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i))
	}
	r := Result{Latencies: lat, Elapsed: 2 * time.Second}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 500}, {0.99, 990}, {0.999, 999}, {1, 1000}} {
		if got := r.Quantile(tc.q); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := r.Rate(); got != 500 {
		t.Errorf("Rate() = %v, want 500", got)
	}
	if got := (Result{}).Quantile(0.99); got != 0 {
		t.Errorf("Quantile of nothing = %v, want 0", got)
	}
}

// TestOpenLoopTimesFromIntendedStart checks that a stall is charged to the
// requests scheduled behind it: with every operation blocked until the
// schedule ends, the first one waits about the whole run.
func TestOpenLoopTimesFromIntendedStart(t *testing.T) {
	release := make(chan struct{})
	res := OpenLoop(context.Background(), 100, 200*time.Millisecond, func(ctx context.Context, i int, _ time.Time) error {
		if i == 19 { // the last one scheduled: let them all finish
			close(release)
		}
		<-release
		if i%2 == 1 {
			return errors.New("odd")
		}
		return nil
	})
	if len(res.Latencies) != 10 || res.Errors != 10 {
		t.Fatalf("%d successes and %d errors, want 10 and 10", len(res.Latencies), res.Errors)
	}
	// The first request was scheduled at the start and blocked until the
	// twentieth was due, 190 ms later.
	if longest := res.Latencies[len(res.Latencies)-1]; longest < 190*time.Millisecond {
		t.Errorf("the longest latency is %v, want at least the 190 ms the first request was held", longest)
	}
}

func TestLastLiveHeap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "service02.log")
	log := `{"time":"2026-11-22T05:20:00Z","level":"INFO","msg":"consuming"}
gc 1 @0.012s 1%: 0.010+0.50+0.002 ms clock, 0.020+0.1/0.4/0+0.004 ms cpu, 3->3->1 MB, 4 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 2 @1.500s 2%: 0.011+2.1+0.003 ms clock, 0.022+0.2/1.9/0+0.006 ms cpu, 40->41->28 MB, 42 MB goal, 0 MB stacks, 0 MB globals, 2 P
gc 3 @1.9`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	live, ok, err := lastLiveHeap(path, 0)
	if err != nil || !ok || live != 28<<20 {
		t.Errorf("lastLiveHeap = %d, %v, %v; want %d, true, nil", live, ok, err, 28<<20)
	}
	since, ok := consumingSince(path, 0)
	if want := time.Date(2026, 11, 22, 5, 20, 0, 0, time.UTC); !ok || !since.Equal(want) {
		t.Errorf("consumingSince = %v, %v; want %v, true", since, ok, want)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8000/ping
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.10ms    5.20ms  90.00ms   80.00%
    Req/Sec     2.65k   300.00     3.10k    70.00%
  Latency Distribution
     50%   11.50ms
     75%   14.00ms
     90%   18.00ms
     99%    1.20s
  26500 requests in 5.00s, 9.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   5300.12
Transfer/sec:      1.82MB
`
	w, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Wrk{Rate: 5300.12, P50: 11500 * time.Microsecond, P99: 1200 * time.Millisecond, Errors: 7}
	if *w != want {
		t.Errorf("parseWrk = %+v, want %+v", *w, want)
	}
	if _, err := parseWrk("wrk: connection refused"); err == nil {
		t.Error("parseWrk accepted an output without Requests/sec")
	}
}
