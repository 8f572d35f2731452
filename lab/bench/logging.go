package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// What make run logs per request, and what each part of it costs. make run
// writes three things for every POST /ping: nginx's access-log line, and
// service01's and service02's "http request" lines at LOG_LEVEL=info, which
// the runner copies to .lab/logs/ and echoes, prefixed, to its terminal.
// The E rows turn the access log off and echo nothing, as a benchmark
// does; these rows put it all back and take one part away at a time, on one
// lab, in turn, so that each difference is measured side by side.

// LoggingSetup is one way of logging the rows compare.
type LoggingSetup struct {
	Name      string
	AccessLog bool   // nginx writes its access log
	LogLevel  string // both services'; "warn" drops the per-request lines
}

// loggingSetups are the rows, in the order they are measured: the two at
// LOG_LEVEL=info first, so that the services restart once per round.
var loggingSetups = []LoggingSetup{
	{Name: "as shipped", AccessLog: true, LogLevel: "info"},
	{Name: "no access log", AccessLog: false, LogLevel: "info"},
	{Name: "no request lines", AccessLog: true, LogLevel: "warn"},
	{Name: "neither", AccessLog: false, LogLevel: "warn"},
}

// LoggingRow is E at Options.LoggingClients under one setup, its rounds
// added together.
type LoggingRow struct {
	Setup LoggingSetup
	E     Result
	CPU   CPU
}

// runLogging measures E on a lab that runs as make run ships it: access
// log on, the services' output copied by the runner to its log files and
// echoed to a terminal. A pipe stands in for the terminal, read as fast as
// the lines come; a real terminal also draws them, which costs its own
// process more than nothing (not measured). The runner is part of the
// benchmark's process here, as it is part of `go run ./lab run` there, so
// its copying shows in the bench column.
func runLogging(ctx context.Context, o Options) ([]LoggingRow, error) {
	o.progress("Starting the lab as make run ships it (access log on, logs echoed), quorum queues...")
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		close(drained)
	}()
	defer func() {
		w.Close()
		<-drained
		r.Close()
	}()
	b, err := startLabWith(ctx, o, "quorum", w)
	if err != nil {
		return nil, err
	}
	defer b.stop()

	rows := make([]LoggingRow, len(loggingSetups))
	level := "info" // the services' LOG_LEVEL as they run now
	c := o.LoggingClients
	for round := range o.LoggingRounds {
		for i, s := range loggingSetups {
			rows[i].Setup = s
			if err := b.useLogging(ctx, s, &level); err != nil {
				return nil, err
			}
			res, cpu, err := b.measureE(ctx, o, c)
			if err != nil {
				return nil, err
			}
			o.progress("  E  %4d clients  logging %-16s round %d  %s", c, s.Name, round+1, res)
			rows[i].E = addResults(rows[i].E, res)
			rows[i].CPU = addCPU(rows[i].CPU, cpu, round)
		}
	}
	return rows, nil
}

// useLogging sets the lab's logging to s: the access log by a reload of
// nginx, the services' level by restarting them (level is what they run
// with now).
func (b *benchLab) useLogging(ctx context.Context, s LoggingSetup, level *string) error {
	if s.AccessLog {
		b.SetGatewayAccessLog(b.DefaultGatewayAccessLog())
	} else {
		b.SetGatewayAccessLog("off")
	}
	if err := b.ReloadGateway(); err != nil {
		return err
	}
	if s.LogLevel == *level {
		return nil
	}
	for _, name := range []string{"service01", "service02"} {
		if err := b.SetServiceEnv(name, "LOG_LEVEL="+s.LogLevel); err != nil {
			return err
		}
		if err := b.StopPart(name); err != nil {
			return err
		}
		if err := b.StartPart(ctx, name); err != nil {
			return fmt.Errorf("restart %s with LOG_LEVEL=%s: %w", name, s.LogLevel, err)
		}
	}
	*level = s.LogLevel
	return nil
}

// addResults joins two measurements of the same row: their operations and
// windows add up, their latencies merge.
func addResults(a, b Result) Result {
	out := Result{
		Latencies: mergeSorted(a.Latencies, b.Latencies),
		Errors:    a.Errors + b.Errors,
		FirstErr:  a.FirstErr,
		Elapsed:   a.Elapsed + b.Elapsed,
		Ops:       a.Ops + b.Ops,
	}
	if out.FirstErr == nil {
		out.FirstErr = b.FirstErr
	}
	return out
}

// addCPU averages per-operation CPU over rounds: c is the mean of n
// earlier rounds, next the new one.
func addCPU(c, next CPU, n int) CPU {
	if c == nil || next == nil {
		return next
	}
	out := CPU{}
	for _, p := range cpuParts {
		out[p] = (c[p]*float64(n) + next[p]) / float64(n+1)
	}
	return out
}

// mergeSorted merges two ascending slices into one.
func mergeSorted(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0] <= b[0] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}
