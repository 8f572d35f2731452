// Package bench measures the lab beside its ceilings, in one run on one
// machine: nginx alone (S), nginx in front of a Go handler (P), the broker
// alone (R), and the lab end to end (E), then publish-to-visible latency,
// how fast service02 drains a backlog and how much memory it holds per
// message, for quorum and classic queues. `make bench` runs it; `make test`
// runs a smoke of it with tiny sizes, which times nothing.
package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"pingpong/lab/runner"
)

// Options are the sizes of a run.
type Options struct {
	Root         string        // the repository
	Warmup       time.Duration // before each closed-loop point, not measured
	Duration     time.Duration // of each closed-loop point
	OpenDuration time.Duration // of each open-loop point
	Clients      []int         // the concurrencies of S, P, R and E
	OpenConns    int           // connections the open-loop points may open at most
	Fractions    []float64     // of E's maximum rate, for the open-loop points
	GoalRuns     int           // E and R open-loop runs in turn at goalFraction
	QueueTypes   []string      // quorum, classic
	DrainSize    int           // the backlog the drain rows consume
	MemorySizes  []int         // stored messages at which service02's heap is measured
	// ClusterClients is the concurrency of R and E on a cluster of three
	// nodes, beside the same rows on one node; 0 skips the cluster.
	ClusterClients int
	// LoggingClients is the concurrency of E with make run's logging, as
	// shipped and with each part of it off, over LoggingRounds rounds taken
	// in turn; 0 skips those rows.
	LoggingClients, LoggingRounds int
	Progress                      io.Writer // a line per point as it is measured; nil for none
	// ProfileDir, when set, gets CPU profiles of both services during E at
	// 64 clients and a heap profile of service02 at the largest memory
	// point, per queue type (see profile.go).
	ProfileDir string
}

// DefaultOptions are the sizes `make bench` runs with.
func DefaultOptions(root string) Options {
	return Options{
		Root:         root,
		Warmup:       time.Second,
		Duration:     5 * time.Second,
		OpenDuration: 5 * time.Second,
		Clients:      []int{16, 64, 256},
		OpenConns:    512,
		Fractions:    []float64{0.5, 0.7, 0.9},
		GoalRuns:     5,
		QueueTypes:   []string{"quorum", "classic"},
		DrainSize:    100_000,
		MemorySizes:  []int{100_000, 1_000_000},

		ClusterClients: profileClients,
		LoggingClients: profileClients,
		LoggingRounds:  3,
	}
}

// SmokeOptions run every row for a moment with tiny sizes: enough to show
// that each produces numbers, far too little to mean anything.
func SmokeOptions(root string) Options {
	return Options{
		Root:         root,
		Warmup:       100 * time.Millisecond,
		Duration:     300 * time.Millisecond,
		OpenDuration: 300 * time.Millisecond,
		Clients:      []int{4},
		OpenConns:    64,
		Fractions:    []float64{0.5, 0.7, 0.9},
		GoalRuns:     2,
		// One queue type: the rows' code is the same for both, and each
		// type costs a lab of its own.
		QueueTypes: []string{"quorum"},
		DrainSize:  1000,
		// The runtime reports the live heap in whole MiB: a few thousand
		// messages make the store's share visible at all.
		MemorySizes: []int{4000, 8000},

		ClusterClients: 4,
		LoggingClients: 4,
		LoggingRounds:  1,
	}
}

// goalFraction is the load, as a fraction of E's maximum, at which the
// latency goals are checked.
const goalFraction = 0.7

// serviceChannels is service01's default SERVICE01_PUBLISH_CHANNELS: R's
// open-loop points publish as E's service01 does, the clients sharing as
// many channels, many messages in flight on each.
const serviceChannels = 2

// profileClients is the E point profiled when profiling: the goal's.
const profileClients = 64

// prefetch is service02's default SERVICE02_PREFETCH, which the raw
// consumer uses too.
const prefetch = 200

// Report is everything one run measured.
type Report struct {
	Options  Options
	Started  time.Time
	Elapsed  time.Duration
	Machine  Machine
	S, P     map[int]Result // by clients
	SCPU     map[int]CPU    // CPU per request of S, by clients
	PCPU     map[int]CPU    // ... of P; "bench" includes P's Go handler
	WrkS     *Wrk           // S measured by wrk, where it is installed
	Queues   []QueueReport
	Cluster  *ClusterReport // nil unless measured
	Logging  []LoggingRow   // E with make run's logging; nil unless measured
	LoadEnd  [3]float64     // the load average when the run ended
	Versions Versions
}

// QueueReport is what was measured for one queue type.
type QueueReport struct {
	Type       string
	R, E       map[int]Result // closed loop, by clients
	RP         map[int]Result // R pipelined: the clients share pipelinedChannels channels
	RCPU, ECPU map[int]CPU    // CPU per message of R and E, by clients
	RPCPU      map[int]CPU    // ... and of R pipelined
	WrkE       *Wrk           // E measured by wrk, where it is installed
	Open       []OpenPoint
	Drain      float64 // messages/s service02 stored from a backlog
	DrainRaw   float64 // messages/s a bare Go consumer acked from the same backlog
	// Replay is the events/s service02 read from an event log of
	// Options.DrainSize events when it started with SERVICE02_REPLAY=true,
	// and ReplayReady the time from its start to ready.
	Replay      float64
	ReplayReady time.Duration
	HeapBase    int64 // service02's live heap with an empty store, bytes
	Memory      []MemoryPoint
	EMax        float64 // E's highest closed-loop rate
	EMaxAt      int     // ... and the clients it was reached with
	RAtGoal     *Result // R open loop at goalFraction of E's maximum
	// GoalE and GoalR are the p99 latencies of E and R open loop at
	// goalFraction, over Options.GoalRuns runs taken in turn (E, R, E, R,
	// ...); the first are those of Open's point and RAtGoal. A p99 over 5
	// seconds moves with any pause of the machine, so the goal compares
	// medians.
	GoalE, GoalR []time.Duration
	OpenErrors   int // requests of the open-loop points that failed
}

// ClusterReport is R and E on a cluster of three nodes, quorum queues
// replicated on all three, at Options.ClusterClients.
type ClusterReport struct {
	R, E       Result
	RCPU, ECPU CPU
}

// OpenPoint is one open-loop point at a fraction of E's maximum rate.
type OpenPoint struct {
	Fraction float64
	Rate     float64 // requests/s offered
	E        Result  // POST /ping latency, from each request's intended start
	Visible  Result  // from the message's date to service02 storing it
	// VisibleFromSend is the same from each request's intended start:
	// it adds the wait before service01 stamps the date.
	VisibleFromSend Result
}

// MemoryPoint is service02's live heap with Stored messages in its store.
type MemoryPoint struct {
	Stored int
	Live   int64 // bytes, after a garbage collection
}

// PerMessage is the heap per stored message above the empty store's.
func (q QueueReport) PerMessage(m MemoryPoint) float64 {
	return float64(m.Live-q.HeapBase) / float64(m.Stored)
}

// Run starts the lab (release build, access log off, rate limit lifted) once
// per queue type and measures every row.
func Run(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{Options: o, Started: time.Now(), S: map[int]Result{}, P: map[int]Result{}, SCPU: map[int]CPU{}, PCPU: map[int]CPU{}}
	rep.Machine = readMachine()
	for i, qt := range o.QueueTypes {
		q, err := runQueueType(ctx, o, rep, qt, i == 0)
		if err != nil {
			return rep, fmt.Errorf("%s queues: %w", qt, err)
		}
		rep.Queues = append(rep.Queues, q)
	}
	if o.ClusterClients > 0 {
		c, err := runCluster(ctx, o)
		if err != nil {
			return rep, fmt.Errorf("cluster: %w", err)
		}
		rep.Cluster = c
	}
	if o.LoggingClients > 0 {
		rows, err := runLogging(ctx, o)
		if err != nil {
			return rep, fmt.Errorf("logging: %w", err)
		}
		rep.Logging = rows
	}
	rep.LoadEnd = loadAverage()
	rep.Elapsed = time.Since(rep.Started)
	return rep, nil
}

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// benchLab is one lab of the run and what the rows need to reach it.
type benchLab struct {
	*runner.Lab
	dir    string
	client *http.Client // for the control requests: metrics, pages, purges
	prof   *profiler    // nil unless profiling
}

// storeCapacity keeps every message of the run in service02's store, so
// the publish-to-visible points find theirs and the memory points measure a
// store that never evicts.
func storeCapacity(o Options) int {
	return max(2_000_000, 2*slices.Max(o.MemorySizes))
}

// startLab starts a lab as the benchmark runs it: access log off, nothing
// echoed (each service writes its log file itself).
func startLab(ctx context.Context, o Options, queueType string, extraEnv ...string) (*benchLab, error) {
	return startLabWith(ctx, o, queueType, nil, extraEnv...)
}

// startLabWith starts a lab; with echo set, it runs as make run does:
// access log on, the output copied by the runner and echoed to echo.
func startLabWith(ctx context.Context, o Options, queueType string, echo io.Writer, extraEnv ...string) (*benchLab, error) {
	env := []string{
		"RABBITMQ_QUEUE_TYPE=" + queueType,
		// The load comes from one address; the gateway's limit is lifted.
		"GATEWAY_RATE_LIMIT=1000000r/s",
		"GATEWAY_RATE_BURST=1000000",
		"SERVICE02_STORE_CAPACITY=" + strconv.Itoa(storeCapacity(o)),
	}
	env = append(env, extraEnv...)
	dir, err := os.MkdirTemp("", "lab-bench-")
	if err != nil {
		return nil, err
	}
	var prof *profiler
	var buildFlags []string
	if o.ProfileDir != "" {
		prof = &profiler{dir: filepath.Join(o.ProfileDir, queueType)}
		flag, err := prof.overlay(o.Root)
		if err != nil {
			return nil, err
		}
		buildFlags = append(buildFlags, flag)
	}
	l, err := runner.NewOnFreePorts(dir, buildFlags, env...)
	if err != nil {
		return nil, err
	}
	if echo != nil {
		l.SetEcho(echo)
	} else {
		l.SetGatewayAccessLog("off")
	}
	if prof != nil {
		if err := prof.listen(l); err != nil {
			return nil, err
		}
	}
	if err := l.Start(ctx, runner.Parts()); err != nil {
		return nil, fmt.Errorf("start the lab: %w (state in %s)", err, dir)
	}
	return &benchLab{Lab: l, dir: dir, client: newClient(4), prof: prof}, nil
}

func (b *benchLab) stop() {
	b.Stop()
	os.RemoveAll(b.dir)
}

// purge empties the lab's queue through the management API, so no row
// inherits a backlog from the one before.
func (b *benchLab) purge(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, b.ManagementURL()+"/api/queues/%2F/"+queue+"/contents", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(b.Config().RabbitMQUser, b.Config().RabbitMQPass)
	resp, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("purge %s: %w", queue, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("purge %s: the management API answered %s", queue, resp.Status)
	}
	return nil
}

// restartService02 starts service02 afresh, with an empty store.
func (b *benchLab) restartService02(ctx context.Context) error {
	if err := b.StopPart("service02"); err != nil {
		return err
	}
	return b.StartPart(ctx, "service02")
}

func runQueueType(ctx context.Context, o Options, rep *Report, queueType string, first bool) (QueueReport, error) {
	q := QueueReport{Type: queueType, R: map[int]Result{}, E: map[int]Result{}, RP: map[int]Result{}, RCPU: map[int]CPU{}, ECPU: map[int]CPU{}, RPCPU: map[int]CPU{}}
	o.progress("Starting the lab with %s queues (release build, access log off, rate limit lifted)...", queueType)
	b, err := startLab(ctx, o, queueType)
	if err != nil {
		return q, err
	}
	defer b.stop()
	if first {
		rep.Versions = readVersions(ctx, b)
		if err := measureCeilings(ctx, o, rep, b); err != nil {
			return q, err
		}
	}
	if err := measureClosed(ctx, o, &q, b); err != nil {
		return q, err
	}
	if err := measureOpen(ctx, o, &q, b); err != nil {
		return q, err
	}
	if err := measureDrain(ctx, o, &q, b); err != nil {
		return q, err
	}
	if err := measureReplay(ctx, o, &q, b); err != nil {
		return q, err
	}
	if err := measureMemory(ctx, o, &q, b); err != nil {
		return q, err
	}
	return q, nil
}

// runCluster measures R and E on a lab whose broker is a cluster of three
// nodes, with quorum queues, the way measureClosed does on one node: the
// price of a replica on every node.
func runCluster(ctx context.Context, o Options) (*ClusterReport, error) {
	o.progress("Starting the lab on a cluster of three nodes, quorum queues...")
	b, err := startLab(ctx, o, "quorum", "RABBITMQ_NODES=3")
	if err != nil {
		return nil, err
	}
	defer b.stop()
	c := o.ClusterClients
	rep := &ClusterReport{}
	if err := b.purge(ctx); err != nil {
		return nil, err
	}
	pub, err := newPublisher(b.AMQPURL(), c)
	if err != nil {
		return nil, fmt.Errorf("R: %w", err)
	}
	before := cpuTimes(b.dir)
	rep.R = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
		return pub.publish(ctx)
	})
	rep.RCPU = cpuPerOp(before, cpuTimes(b.dir), rep.R.Ops)
	pub.close()
	o.progress("  R  %4d clients  3 nodes  %s", c, rep.R)

	if rep.E, rep.ECPU, err = b.measureE(ctx, o, c); err != nil {
		return nil, err
	}
	o.progress("  E  %4d clients  3 nodes  %s", c, rep.E)
	return rep, nil
}

// measureE runs E closed loop at c clients on a purged queue, and returns
// it with its CPU per request.
func (b *benchLab) measureE(ctx context.Context, o Options, c int) (Result, CPU, error) {
	if err := b.purge(ctx); err != nil {
		return Result{}, nil, err
	}
	client, err := newLoadClient(b.GatewayURL(), c)
	if err != nil {
		return Result{}, nil, err
	}
	defer client.close()
	ping := newPinger(client)
	before := cpuTimes(b.dir)
	res := ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
		return ping.ping(ctx)
	})
	return res, cpuPerOp(before, cpuTimes(b.dir), res.Ops), nil
}

// measureCeilings measures S (nginx's own /healthz) and P (the same gateway
// template in a second nginx, proxying POST /ping to a Go handler that does
// no broker work).
func measureCeilings(ctx context.Context, o Options, rep *Report, b *benchLab) error {
	port, stopHandler, err := startNoBroker()
	if err != nil {
		return err
	}
	defer stopHandler()
	ports, err := runner.FreePorts(5)
	if err != nil {
		return err
	}
	cfg := b.Config()
	cfg.GatewayPort, cfg.Service01Port, cfg.Service02Port = ports[0], port, ports[1]
	cfg.RabbitMQPort, cfg.ManagementPort = ports[2], ports[3]
	dir, err := os.MkdirTemp("", "lab-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	proxy := runner.New(cfg, runner.Options{Root: o.Root, State: dir, DistPort: ports[4], EpmdPort: ports[4]})
	proxy.SetGatewayAccessLog("off")
	if err := proxy.Start(ctx, []string{"nginx"}); err != nil {
		return fmt.Errorf("start the proxy-ceiling gateway: %w", err)
	}
	defer proxy.Stop()

	for _, c := range o.Clients {
		static, err := newLoadClient(b.GatewayURL(), c)
		if err != nil {
			return err
		}
		healthz := getter(static, "/healthz")
		before := cpuTimes(b.dir)
		rep.S[c] = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
			return healthz(ctx)
		})
		rep.SCPU[c] = cpuPerOp(before, cpuTimes(b.dir), rep.S[c].Ops)
		static.close()
		o.progress("  S  %4d clients  %s", c, rep.S[c])
		proxied, err := newLoadClient(proxy.GatewayURL(), c)
		if err != nil {
			return err
		}
		ping := newPinger(proxied)
		before = cpuTimes(dir)
		rep.P[c] = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
			return ping.ping(ctx)
		})
		rep.PCPU[c] = cpuPerOp(before, cpuTimes(dir), rep.P[c].Ops)
		o.progress("  P  %4d clients  %s", c, rep.P[c])
		proxied.close()
	}
	rep.WrkS, err = runWrk(ctx, b.GatewayURL()+"/healthz", profileClients, o.Duration, false)
	return err
}

// measureClosed measures R, R pipelined and E at each concurrency, side by
// side.
func measureClosed(ctx context.Context, o Options, q *QueueReport, b *benchLab) error {
	for _, c := range o.Clients {
		if err := b.purge(ctx); err != nil {
			return err
		}
		pub, err := newPublisher(b.AMQPURL(), c)
		if err != nil {
			return fmt.Errorf("R: %w", err)
		}
		before := cpuTimes(b.dir)
		q.R[c] = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
			return pub.publish(ctx)
		})
		q.RCPU[c] = cpuPerOp(before, cpuTimes(b.dir), q.R[c].Ops)
		pub.close()
		o.progress("  R  %4d clients  %-8s %s", c, q.Type, q.R[c])

		if err := b.purge(ctx); err != nil {
			return err
		}
		pipe, err := newPipelinedPublisher(b.AMQPURL(), min(c, pipelinedChannels))
		if err != nil {
			return fmt.Errorf("R pipelined: %w", err)
		}
		before = cpuTimes(b.dir)
		q.RP[c] = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, client int) error {
			return pipe.publish(ctx, client)
		})
		q.RPCPU[c] = cpuPerOp(before, cpuTimes(b.dir), q.RP[c].Ops)
		pipe.close()
		o.progress("  R pipelined %4d clients  %-8s %s", c, q.Type, q.RP[c])

		if err := b.purge(ctx); err != nil {
			return err
		}
		client, err := newLoadClient(b.GatewayURL(), c)
		if err != nil {
			return err
		}
		ping := newPinger(client)
		profiled := func() error { return nil }
		if b.prof != nil && c == profileClients {
			profiled = b.prof.cpu(ctx, fmt.Sprintf("E%d", c), max(o.Warmup+o.Duration, time.Second))
		}
		before = cpuTimes(b.dir)
		q.E[c] = ClosedLoop(ctx, c, o.Warmup, o.Duration, func(ctx context.Context, _ int) error {
			return ping.ping(ctx)
		})
		q.ECPU[c] = cpuPerOp(before, cpuTimes(b.dir), q.E[c].Ops)
		client.close()
		if err := profiled(); err != nil {
			return err
		}
		o.progress("  E  %4d clients  %-8s %s", c, q.Type, q.E[c])
		if r := q.E[c].Rate(); r > q.EMax {
			q.EMax, q.EMaxAt = r, c
		}
	}
	if err := b.purge(ctx); err != nil {
		return err
	}
	var err error
	if q.WrkE, err = runWrk(ctx, b.GatewayURL()+"/ping", profileClients, o.Duration, true); err != nil {
		return err
	}
	if q.EMax == 0 {
		return fmt.Errorf("E produced no successful request: %v", q.E[o.Clients[0]].FirstErr)
	}
	return nil
}

// measureOpen sends POST /ping at fixed fractions of E's maximum rate and
// measures both the answer's latency and when each message became visible
// in service02; at goalFraction it also runs R open loop at the same rate.
func measureOpen(ctx context.Context, o Options, q *QueueReport, b *benchLab) error {
	if err := b.purge(ctx); err != nil {
		return err
	}
	// An empty store keeps the paging through it short.
	if err := b.restartService02(ctx); err != nil {
		return err
	}
	client, err := newLoadClient(b.GatewayURL(), o.OpenConns)
	if err != nil {
		return err
	}
	defer client.close()
	ping := newPinger(client)
	for _, f := range o.Fractions {
		rate := f * q.EMax
		// A moment at the rate first, unmeasured, so that connections are
		// open and pools warm when the measured schedule starts.
		OpenLoop(ctx, rate, o.Warmup, func(ctx context.Context, _ int, _ time.Time) error {
			return ping.ping(ctx)
		})
		var mu sync.Mutex
		intended := make(map[string]time.Time)
		res := OpenLoop(ctx, rate, o.OpenDuration, func(ctx context.Context, _ int, t time.Time) error {
			id, err := ping.pingID(ctx)
			if err == nil {
				mu.Lock()
				intended[id] = t
				mu.Unlock()
			}
			return err
		})
		q.OpenErrors += res.Errors
		stored, err := storedTimes(ctx, b.client, b.ServiceURL("service02"), intended, 60*time.Second)
		if err != nil {
			return fmt.Errorf("publish-to-visible at %.0f%%: %w", 100*f, err)
		}
		var vis, visSend recorder
		for id, st := range stored {
			vis.add(st.stored.Sub(st.date), nil)
			visSend.add(st.stored.Sub(intended[id]), nil)
		}
		p := OpenPoint{Fraction: f, Rate: rate, E: res, Visible: vis.result(o.OpenDuration), VisibleFromSend: visSend.result(o.OpenDuration)}
		q.Open = append(q.Open, p)
		o.progress("  E open %3.0f%% = %.0f/s  %-8s %s; visible p50 %s p99 %s", 100*f, rate, q.Type, res, ms(p.Visible.Quantile(0.5)), ms(p.Visible.Quantile(0.99)))

		if f == goalFraction {
			pub, err := newPipelinedPublisher(b.AMQPURL(), serviceChannels)
			if err != nil {
				return fmt.Errorf("R: %w", err)
			}
			openR := func() Result {
				return OpenLoop(ctx, rate, o.OpenDuration, func(ctx context.Context, i int, _ time.Time) error {
					return pub.publish(ctx, i)
				})
			}
			r := openR()
			q.RAtGoal = &r
			q.GoalE, q.GoalR = []time.Duration{res.Quantile(0.99)}, []time.Duration{r.Quantile(0.99)}
			o.progress("  R open %3.0f%% = %.0f/s  %-8s %s", 100*f, rate, q.Type, r)
			for run := 2; run <= o.GoalRuns; run++ {
				e := OpenLoop(ctx, rate, o.OpenDuration, func(ctx context.Context, _ int, _ time.Time) error {
					return ping.ping(ctx)
				})
				q.OpenErrors += e.Errors
				r := openR()
				q.GoalE, q.GoalR = append(q.GoalE, e.Quantile(0.99)), append(q.GoalR, r.Quantile(0.99))
				o.progress("  E, R open %3.0f%%, run %d of %d: p99 %s, %s", 100*f, run, o.GoalRuns, ms(e.Quantile(0.99)), ms(r.Quantile(0.99)))
			}
			pub.close()
		}
	}
	return nil
}

// measureDrain fills the queue with a backlog while service02 is stopped,
// then times service02 consuming it, and a bare Go consumer consuming the
// same backlog again.
func measureDrain(ctx context.Context, o Options, q *QueueReport, b *benchLab) error {
	if err := b.StopPart("service02"); err != nil {
		return err
	}
	if err := b.purge(ctx); err != nil {
		return err
	}
	o.progress("  drain: publishing a backlog of %d messages...", o.DrainSize)
	if err := fill(ctx, b.AMQPURL(), o.DrainSize); err != nil {
		return err
	}
	// Timed from the moment service02 logs that it consumes (its start
	// before that is not draining), or else from its start.
	logPath := b.LogPath("service02")
	offset := fileSize(logPath)
	start := time.Now()
	if err := b.StartPart(ctx, "service02"); err != nil {
		return err
	}
	done, err := waitConsumed(ctx, b.client, b.ServiceURL("service02"), o.DrainSize, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if t, ok := consumingSince(logPath, offset); ok && t.After(start) {
		start = t
	}
	rate := float64(o.DrainSize) / done.Sub(start).Seconds()
	q.Drain = rate
	o.progress("  D  service02      %-8s %.0f msg/s", q.Type, rate)

	if err := b.StopPart("service02"); err != nil {
		return err
	}
	if err := b.purge(ctx); err != nil {
		return err
	}
	if err := fill(ctx, b.AMQPURL(), o.DrainSize); err != nil {
		return err
	}
	elapsed, err := drainRaw(ctx, b.AMQPURL(), o.DrainSize, prefetch)
	if err != nil {
		return fmt.Errorf("raw drain: %w", err)
	}
	q.DrainRaw = float64(o.DrainSize) / elapsed.Seconds()
	o.progress("  D  raw consumer   %-8s %.0f msg/s", q.Type, q.DrainRaw)
	return nil
}

// replayStream is the event log the replay row reads: one of its own, so
// that it holds exactly Options.DrainSize events, whatever the rows before
// left in the lab's pings.log.
const replayStream = "bench.replay"

// measureReplay fills an event log of its own with DrainSize events, then
// times service02 from its start with SERVICE02_REPLAY=true to ready, and
// reads the replay's rate from its log line. service02 then runs as it did
// before.
func measureReplay(ctx context.Context, o Options, q *QueueReport, b *benchLab) error {
	// service02 declares the stream, with the lab's retention, on a start
	// without replay.
	logHere := []string{"RABBITMQ_LOG_STREAM=" + replayStream}
	if err := b.StopPart("service02"); err != nil {
		return err
	}
	if err := b.StartPartWith(ctx, "service02", logHere); err != nil {
		return err
	}
	if err := b.StopPart("service02"); err != nil {
		return err
	}
	if err := b.purge(ctx); err != nil {
		return err
	}
	o.progress("  replay: writing %d events to the log %s...", o.DrainSize, replayStream)
	if err := fillTo(ctx, b.AMQPURL(), "", replayStream, o.DrainSize); err != nil {
		return err
	}
	logPath := b.LogPath("service02")
	offset := fileSize(logPath)
	start := time.Now()
	if err := b.StartPartWith(ctx, "service02", append(logHere, "SERVICE02_REPLAY=true")); err != nil {
		return err
	}
	q.ReplayReady = time.Since(start)
	events, rate, ok := replayedLine(logPath, offset)
	if !ok || events != o.DrainSize {
		return fmt.Errorf("replay: service02 logged no \"event log replayed\" line for %d events (found %v, %d events)", o.DrainSize, ok, events)
	}
	q.Replay = rate
	o.progress("  RP service02      %-8s %.0f events/s, ready in %s", q.Type, rate, q.ReplayReady.Round(10*time.Millisecond))

	if err := b.StopPart("service02"); err != nil {
		return err
	}
	return b.StartPartWith(ctx, "service02", []string{"RABBITMQ_LOG_STREAM=pings.log", "SERVICE02_REPLAY=false"})
}

// measureMemory restarts service02 with GODEBUG=gctrace=1 (a line per
// garbage collection, with the heap it marked live) and a low GOGC (so a
// few requests trigger a collection), measures its live heap empty, then
// fills its store to each size and measures again.
func measureMemory(ctx context.Context, o Options, q *QueueReport, b *benchLab) error {
	if err := b.StopPart("service02"); err != nil {
		return err
	}
	if err := b.purge(ctx); err != nil {
		return err
	}
	if err := b.SetServiceEnv("service02", "GODEBUG=gctrace=1", "GOGC=20"); err != nil {
		return err
	}
	if err := b.StartPart(ctx, "service02"); err != nil {
		return err
	}
	s2, logPath := b.ServiceURL("service02"), b.LogPath("service02")
	base, err := liveHeapAfterGC(ctx, b.client, s2, logPath)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	q.HeapBase = base
	stored := 0
	for _, n := range o.MemorySizes {
		o.progress("  memory: filling service02's store to %d messages...", n)
		if err := fill(ctx, b.AMQPURL(), n-stored); err != nil {
			return err
		}
		stored = n
		if err := waitStored(ctx, b.client, s2, n, 15*time.Minute); err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		live, err := liveHeapAfterGC(ctx, b.client, s2, logPath)
		if err != nil {
			return fmt.Errorf("memory: %w", err)
		}
		m := MemoryPoint{Stored: n, Live: live}
		q.Memory = append(q.Memory, m)
		o.progress("  M  %8d stored  %-8s live heap %d MiB, %.0f B/message", n, q.Type, live>>20, q.PerMessage(m))
	}
	if b.prof != nil {
		// gc=1: the profile is taken right after a garbage collection.
		return b.prof.fetch(ctx, "service02", "heap?gc=1", fmt.Sprintf("M%d-service02.heap.pprof", stored))
	}
	return nil
}

// fileSize is the size of the file at path, 0 if it does not exist.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// waitStored polls until service02's store holds n messages.
func waitStored(ctx context.Context, client *http.Client, service02 string, n int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		c, err := counter(ctx, client, service02+"/metrics", "service02_store_messages")
		if err == nil && c >= float64(n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service02 did not store %d messages within %s (last: %v, %v)", n, limit, c, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
