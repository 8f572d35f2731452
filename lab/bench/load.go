package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// Result is what one load run measured: every successful operation's
// latency, sorted, and the failures.
type Result struct {
	Latencies []time.Duration // successful operations, sorted ascending
	Errors    int
	FirstErr  error         // the first failure, to say what went wrong
	Elapsed   time.Duration // the measured window
	Ops       int           // every operation run, warm-up and failures included
}

// Rate is the successful operations per second over the measured window.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

// Quantile returns the latency below which a fraction q of the operations
// fall (nearest rank), or 0 when there are none.
func (r Result) Quantile(q float64) time.Duration {
	return quantile(r.Latencies, q)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// recorder collects latencies from many goroutines. A plain sorted slice
// instead of an HDR histogram: a run holds at most a few hundred thousand
// samples, and exact quantiles need no explanation.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errors   int
	firstErr error
	ops      int
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops++
	if err != nil {
		if r.errors == 0 {
			r.firstErr = err
		}
		r.errors++
		return
	}
	r.lat = append(r.lat, d)
}

// warmedUp counts an operation of the warm-up, which is not measured.
func (r *recorder) warmedUp() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops++
}

func (r *recorder) result(elapsed time.Duration) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.lat)
	return Result{Latencies: r.lat, Errors: r.errors, FirstErr: r.firstErr, Elapsed: elapsed, Ops: r.ops}
}

// ClosedLoop runs op from clients goroutines, each starting its next
// operation as soon as the previous one ends, for warmup and then for d.
// Only operations that start after the warm-up count, so the result is the
// steady state: the maximum throughput at that concurrency, and the latency
// that comes with it.
func ClosedLoop(ctx context.Context, clients int, warmup, d time.Duration, op func(ctx context.Context, client int) error) Result {
	var rec recorder
	start := time.Now()
	measureFrom, end := start.Add(warmup), start.Add(warmup+d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(end) {
					return
				}
				err := op(ctx, c)
				if t.Before(measureFrom) {
					rec.warmedUp()
				} else {
					rec.add(time.Since(t), err)
				}
			}
		})
	}
	wg.Wait()
	// The operations started before end but finished after it are counted
	// too; measuring until the last one ends keeps the rate honest.
	return rec.result(time.Since(measureFrom))
}

// OpenLoop starts op at a fixed rate for d, each at its scheduled time
// whether or not earlier ones have finished, and measures each latency from
// that intended start. A slow answer therefore cannot hold back the next
// requests and hide the queueing behind it (coordinated omission): what the
// requests that would have been sent meanwhile wait is counted in full.
func OpenLoop(ctx context.Context, rate float64, d time.Duration, op func(ctx context.Context, i int, intended time.Time) error) Result {
	var rec recorder
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if intended.Sub(start) >= d || ctx.Err() != nil {
			break
		}
		if wait := time.Until(intended); wait > 0 {
			// Pacing the schedule, not waiting for something to happen.
			time.Sleep(wait)
		}
		wg.Go(func() {
			err := op(ctx, i, intended)
			rec.add(time.Since(intended), err)
		})
	}
	wg.Wait()
	return rec.result(d)
}
