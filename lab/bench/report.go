package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"pingpong/lab/runner"
)

// Machine is what the numbers were measured on.
type Machine struct {
	Cores     int
	CPU       string
	MemoryMiB int64
	LoadStart [3]float64 // the load average when the run started
}

// Versions are the versions of what the lab runs on.
type Versions struct {
	Go, RabbitMQ, Erlang, Nginx string
}

func readMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), LoadStart: loadAverage()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMiB = kb >> 10
			}
		}
	}
	return m
}

// loadAverage is the 1, 5 and 15 minute load average (zeros when unknown).
func loadAverage() [3]float64 {
	var l [3]float64
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(data))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

func readVersions(ctx context.Context, b *benchLab) Versions {
	v := Versions{Go: runtime.Version(), RabbitMQ: "?", Erlang: "?", Nginx: "?"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.ManagementURL()+"/api/overview", nil)
	if err == nil {
		req.SetBasicAuth(b.Config().RabbitMQUser, b.Config().RabbitMQPass)
		if resp, err := b.client.Do(req); err == nil {
			var o struct {
				RabbitMQ string `json:"rabbitmq_version"`
				Erlang   string `json:"erlang_version"`
			}
			if json.NewDecoder(resp.Body).Decode(&o) == nil {
				v.RabbitMQ, v.Erlang = o.RabbitMQ, o.Erlang
			}
			resp.Body.Close()
		}
	}
	for _, bin := range []string{"nginx", "/usr/sbin/nginx"} {
		if runner.Sysroot() != "" {
			bin = "/usr/sbin/nginx"
		}
		// nginx -v prints "nginx version: nginx/1.22.1" on stderr.
		if out, err := runner.SystemCommand(ctx, bin, "-v").CombinedOutput(); err == nil {
			v.Nginx = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
			break
		}
	}
	return v
}

// String is a one-line summary, for the progress lines.
func (r Result) String() string {
	s := fmt.Sprintf("%8.0f/s  p50 %s  p99 %s  p99.9 %s", r.Rate(), ms(r.Quantile(0.5)), ms(r.Quantile(0.99)), ms(r.Quantile(0.999)))
	if r.Errors > 0 {
		s += fmt.Sprintf("  %d errors (first: %v)", r.Errors, r.FirstErr)
	}
	return s
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// thousands writes n with thin groups of three digits: 12 345.
func thousands(n float64) string {
	s := strconv.FormatInt(int64(n+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Table is the run's results as one Markdown table, which also reads well
// in a terminal.
func (rep *Report) Table() string {
	var b strings.Builder
	b.WriteString("| row | queue | load | throughput | p50 | p99 | p99.9 | errors | notes |\n")
	b.WriteString("|-----|-------|------|-----------:|----:|----:|------:|-------:|-------|\n")
	row := func(name, queue, load string, r Result, unit, notes string) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s %s | %s | %s | %s | %d | %s |\n", name, queue, load,
			thousands(r.Rate()), unit, ms(r.Quantile(0.5)), ms(r.Quantile(0.99)), ms(r.Quantile(0.999)), r.Errors, notes)
	}
	for _, c := range rep.Options.Clients {
		row("S", "–", clients(c), rep.S[c], "req/s", "nginx answers `GET /healthz` itself")
	}
	for _, c := range rep.Options.Clients {
		row("P", "–", clients(c), rep.P[c], "req/s", "nginx → Go handler, no broker")
	}
	wrkRow := func(name, queue string, w *Wrk) {
		if w != nil {
			fmt.Fprintf(&b, "| %s (wrk) | %s | %d connections | %s req/s | %s | %s | – | %d | cross-check with wrk |\n",
				name, queue, profileClients, thousands(w.Rate), ms(w.P50), ms(w.P99), w.Errors)
		}
	}
	wrkRow("S", "–", rep.WrkS)
	for _, q := range rep.Queues {
		for _, c := range rep.Options.Clients {
			row("R", q.Type, clients(c), q.R[c], "msg/s", "Go publisher, one confirm awaited per message")
		}
		for _, c := range rep.Options.Clients {
			row("R pipelined", q.Type, clients(c), q.RP[c], "msg/s", fmt.Sprintf("the same clients sharing %d channels, many confirms outstanding on each", min(c, pipelinedChannels)))
		}
		for _, c := range rep.Options.Clients {
			e := q.E[c]
			row("E", q.Type, clients(c), e, "req/s", fmt.Sprintf("E/R %.2f, E/R pipelined %.2f, E/P %.2f",
				ratio(e.Rate(), q.R[c].Rate()), ratio(e.Rate(), q.RP[c].Rate()), ratio(e.Rate(), rep.P[c].Rate())))
		}
		wrkRow("E", q.Type, q.WrkE)
		for _, p := range q.Open {
			load := fmt.Sprintf("open %.0f %% (%s/s)", 100*p.Fraction, thousands(p.Rate))
			note := "`POST /ping` latency from the intended send time"
			if p.Fraction == goalFraction && len(q.GoalE) > 1 {
				note += "; p99 of each run: " + msList(q.GoalE)
			}
			row("E open", q.Type, load, p.E, "req/s", note)
			fmt.Fprintf(&b, "| visible | %s | %s | %s msg | %s | %s | %s | – | from `date`; from the intended send: p50 %s, p99 %s |\n",
				q.Type, load, thousands(float64(len(p.Visible.Latencies))),
				ms(p.Visible.Quantile(0.5)), ms(p.Visible.Quantile(0.99)), ms(p.Visible.Quantile(0.999)),
				ms(p.VisibleFromSend.Quantile(0.5)), ms(p.VisibleFromSend.Quantile(0.99)))
			if p.Fraction == goalFraction && q.RAtGoal != nil {
				note := fmt.Sprintf("sharing %d channels, as service01", serviceChannels)
				if len(q.GoalR) > 1 {
					note += "; p99 of each run: " + msList(q.GoalR)
				}
				row("R open", q.Type, load, *q.RAtGoal, "msg/s", note)
			}
		}
		fmt.Fprintf(&b, "| drain | %s | %s backlog | %s msg/s | | | | | service02, prefetch %d; %.1f × E's max |\n",
			q.Type, thousands(float64(rep.Options.DrainSize)), thousands(q.Drain), prefetch, ratio(q.Drain, q.EMax))
		fmt.Fprintf(&b, "| drain raw | %s | %s backlog | %s msg/s | | | | | bare Go consumer, prefetch %d, ack each |\n",
			q.Type, thousands(float64(rep.Options.DrainSize)), thousands(q.DrainRaw), prefetch)
		fmt.Fprintf(&b, "| replay | %s | %s in the log | %s events/s | | | | | service02 with SERVICE02_REPLAY=true, ready %.1f s after its start; %.2f × the drain rate |\n",
			q.Type, thousands(float64(rep.Options.DrainSize)), thousands(q.Replay), q.ReplayReady.Seconds(), ratio(q.Replay, q.Drain))
		for _, m := range q.Memory {
			fmt.Fprintf(&b, "| memory | %s | %s stored | %.0f B/msg | | | | | live heap %d MiB, %d MiB empty |\n",
				q.Type, thousands(float64(m.Stored)), q.PerMessage(m), m.Live>>20, q.HeapBase>>20)
		}
	}
	if c := rep.Cluster; c != nil {
		n := rep.Options.ClusterClients
		var one QueueReport // the quorum queues on one node, for the ratios
		for _, q := range rep.Queues {
			if q.Type == "quorum" {
				one = q
			}
		}
		row("R cluster", "quorum, 3 nodes", clients(n), c.R, "msg/s", fmt.Sprintf("R on three nodes, a replica on each; %.2f × R on one node", ratio(c.R.Rate(), one.R[n].Rate())))
		row("E cluster", "quorum, 3 nodes", clients(n), c.E, "req/s", fmt.Sprintf("E/R %.2f; %.2f × E on one node", ratio(c.E.Rate(), c.R.Rate()), ratio(c.E.Rate(), one.E[n].Rate())))
	}
	for _, l := range rep.Logging {
		row("E logging: "+l.Setup.Name, "quorum", clients(rep.Options.LoggingClients), l.E, "req/s", loggingNote(rep.Logging, l))
	}
	return b.String()
}

func clients(c int) string { return strconv.Itoa(c) + " clients" }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Goal is one of the goals and whether this run met it.
type Goal struct {
	Name, Want, Got string
	Met             bool
}

// Goals checks the run against the lab's goals, per queue type.
func (rep *Report) Goals() []Goal {
	var goals []Goal
	for _, q := range rep.Queues {
		add := func(name, want, got string, met bool) {
			goals = append(goals, Goal{Name: q.Type + ": " + name, Want: want, Got: got, Met: met})
		}
		if e, r := q.E[64], q.R[64]; len(e.Latencies) > 0 && len(r.Latencies) > 0 {
			got := fmt.Sprintf("E = %.2f × R", ratio(e.Rate(), r.Rate()))
			if ec, rc := q.ECPU[64], q.RCPU[64]; ec != nil && rc != nil {
				// When the cores are saturated, as both rows saturate them
				// on a small machine, each row's rate is the cores' time
				// divided by its CPU per operation: E/R is then about R's
				// CPU per operation divided by E's.
				got += fmt.Sprintf("; CPU per operation R ÷ E = %.0f ÷ %.0f µs = %.2f", rc.Total(), ec.Total(), ratio(rc.Total(), ec.Total()))
			}
			add("E vs R at 64 clients", "E ≥ 0.8 × R", got, e.Rate() >= 0.8*r.Rate())
		}
		for _, p := range q.Open {
			if p.Fraction != goalFraction || q.RAtGoal == nil {
				continue
			}
			e99, r99 := median(q.GoalE), median(q.GoalR)
			add("E's p99 at 70 % of its max", "≤ 2 × R's p99 at that rate",
				fmt.Sprintf("%s vs R's %s (%.1f ×), the medians of %d runs each", ms(e99), ms(r99), ratio(float64(e99), float64(r99)), len(q.GoalE)), e99 <= 2*r99)
			v99 := p.Visible.Quantile(0.99)
			add("publish-to-visible p99 at 70 %", "≤ 25 ms", ms(v99), v99 <= 25*time.Millisecond)
		}
		add("drain", "≥ 2 × E's max", fmt.Sprintf("%s msg/s = %.1f × %s req/s", thousands(q.Drain), ratio(q.Drain, q.EMax), thousands(q.EMax)), q.Drain >= 2*q.EMax)
		add(fmt.Sprintf("replay of %s events", thousands(float64(rep.Options.DrainSize))), "ready ≤ 10 s", fmt.Sprintf("%.1f s", q.ReplayReady.Seconds()), q.ReplayReady <= 10*time.Second)
		add("replay rate", "≥ ½ × the drain rate", fmt.Sprintf("%s events/s = %.2f × %s msg/s", thousands(q.Replay), ratio(q.Replay, q.Drain), thousands(q.Drain)), q.Replay >= q.Drain/2)
		if len(q.Memory) > 0 {
			m := q.Memory[len(q.Memory)-1]
			per := q.PerMessage(m)
			add(fmt.Sprintf("heap per message at %s", thousands(float64(m.Stored))), "≤ 400 B", fmt.Sprintf("%.0f B", per), per <= 400)
		}
	}
	return goals
}

// median is the middle of ds (the upper middle for an even count), or 0.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[len(sorted)/2]
}

// msList formats durations as "1.20, 3.40, 2.00 ms" in their order.
func msList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = strings.TrimSuffix(ms(d), " ms")
	}
	return strings.Join(parts, ", ") + " ms"
}

// CPUTable is the CPU time each part spent per operation in the
// closed-loop rows, in microseconds: on a machine with few cores, where the
// load generator, nginx, the services and the broker share the same cycles,
// it says where each row's time goes.
func (rep *Report) CPUTable() string {
	var b strings.Builder
	b.WriteString("| row | queue | load |")
	for _, p := range cpuParts {
		b.WriteString(" " + p + " |")
	}
	b.WriteString(" total |\n|-----|-------|------|")
	for range cpuParts {
		b.WriteString("----:|")
	}
	b.WriteString("----:|\n")
	row := func(name, queue string, c int, cpu CPU) {
		if cpu == nil {
			return
		}
		fmt.Fprintf(&b, "| %s | %s | %s |", name, queue, clients(c))
		for _, p := range cpuParts {
			fmt.Fprintf(&b, " %.0f |", cpu[p])
		}
		fmt.Fprintf(&b, " %.0f |\n", cpu.Total())
	}
	for _, c := range rep.Options.Clients {
		row("S", "–", c, rep.SCPU[c])
		row("P", "–", c, rep.PCPU[c])
	}
	for _, q := range rep.Queues {
		for _, c := range rep.Options.Clients {
			row("R", q.Type, c, q.RCPU[c])
			row("R pipelined", q.Type, c, q.RPCPU[c])
			row("E", q.Type, c, q.ECPU[c])
		}
	}
	if c := rep.Cluster; c != nil {
		row("R cluster", "quorum, 3 nodes", rep.Options.ClusterClients, c.RCPU)
		row("E cluster", "quorum, 3 nodes", rep.Options.ClusterClients, c.ECPU)
	}
	for _, l := range rep.Logging {
		row("E logging: "+l.Setup.Name, "quorum", rep.Options.LoggingClients, l.CPU)
	}
	return b.String()
}

// GoalsTable is Goals as a Markdown table.
func (rep *Report) GoalsTable() string {
	var b strings.Builder
	b.WriteString("| goal | wanted | measured | met |\n|------|--------|----------|-----|\n")
	for _, g := range rep.Goals() {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Want, g.Got, met)
	}
	return b.String()
}

// Summary is the table, the goals and the conditions, for the terminal.
func (rep *Report) Summary() string {
	return fmt.Sprintf("%s\n%s\nCPU time per operation, µs:\n\n%s\n%s\n", rep.conditions(), rep.Table(), rep.CPUTable(), rep.GoalsTable())
}

func (rep *Report) conditions() string {
	m, v := rep.Machine, rep.Versions
	return fmt.Sprintf("Measured %s on %d cores (%s), %d MiB of memory; load average %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end; run took %s.\n"+
		"RabbitMQ %s (Erlang %s), %s, %s.",
		rep.Started.UTC().Format("2006-01-02 15:04 MST"), m.Cores, m.CPU, m.MemoryMiB,
		m.LoadStart[0], m.LoadStart[1], m.LoadStart[2], rep.LoadEnd[0], rep.LoadEnd[1], rep.LoadEnd[2],
		rep.Elapsed.Round(time.Second), v.RabbitMQ, v.Erlang, v.Nginx, v.Go)
}

// loggingNote says what a logging row logs, and its rate and CPU per
// request beside the row as shipped.
func loggingNote(rows []LoggingRow, l LoggingRow) string {
	on := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	note := fmt.Sprintf("access log %s, LOG_LEVEL=%s, echoed by the runner", on(l.Setup.AccessLog), l.Setup.LogLevel)
	shipped := rows[0]
	if l.Setup == shipped.Setup || shipped.CPU == nil || l.CPU == nil {
		return note
	}
	return note + fmt.Sprintf("; %.2f × as shipped, %+.0f µs CPU per request", ratio(l.E.Rate(), shipped.E.Rate()), l.CPU.Total()-shipped.CPU.Total())
}
