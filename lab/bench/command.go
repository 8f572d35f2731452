package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Command is `lab bench`: it runs the benchmark, prints the table and, for a
// full run, writes docs/reference/benchmarks.md.
func Command(ctx context.Context, root string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stdout)
	smoke := fs.Bool("smoke", false, "run every row for a moment with tiny sizes (what make test does); writes no file")
	out := fs.String("out", filepath.Join("docs", "reference", "benchmarks.md"), "where to write the report, relative to the repository; \"\" for nowhere")
	o := DefaultOptions(root)
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of each closed-loop point")
	fs.DurationVar(&o.OpenDuration, "open-duration", o.OpenDuration, "length of each open-loop point")
	fs.StringVar(&o.ProfileDir, "profile", "", "a folder (relative to the repository) for pprof profiles of the services, built with a pprof endpoint for the run")
	clientList := fs.String("clients", joinInts(o.Clients), "concurrencies of the closed-loop rows")
	memory := fs.String("memory", joinInts(o.MemorySizes), "stored messages at which service02's heap is measured")
	fs.IntVar(&o.OpenConns, "open-conns", o.OpenConns, "connections the open-loop points may open at most (each waiting request is still timed from its intended start)")
	fs.IntVar(&o.DrainSize, "drain", o.DrainSize, "the backlog of the drain rows, in messages")
	fs.IntVar(&o.GoalRuns, "goal-runs", o.GoalRuns, "E and R open-loop runs, in turn, at 70 % of E's maximum; the latency goal compares their median p99s")
	queueTypes := fs.String("queue-types", strings.Join(o.QueueTypes, ","), "queue types to measure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.Clients, err = parseInts(*clientList); err != nil {
		return fmt.Errorf("-clients: %w", err)
	}
	if o.MemorySizes, err = parseInts(*memory); err != nil {
		return fmt.Errorf("-memory: %w", err)
	}
	if o.GoalRuns < 1 {
		return fmt.Errorf("-goal-runs: %d is not a positive whole number", o.GoalRuns)
	}
	if *smoke {
		o = SmokeOptions(root)
		*out = ""
	}
	o.QueueTypes = strings.Split(*queueTypes, ",")
	if o.ProfileDir != "" && !filepath.IsAbs(o.ProfileDir) {
		o.ProfileDir = filepath.Join(root, o.ProfileDir)
	}
	for _, qt := range o.QueueTypes {
		if qt != "quorum" && qt != "classic" {
			return fmt.Errorf("-queue-types: %q is neither quorum nor classic", qt)
		}
	}
	o.Progress = stdout
	fmt.Fprintln(stdout, "Benchmarking the lab; every row is measured in this run, on this machine.")
	rep, err := Run(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s", rep.Summary())
	if *out == "" {
		return nil
	}
	path := filepath.Join(root, *out)
	cmd := "make bench"
	if len(args) > 0 {
		cmd = "go run ./lab bench " + strings.Join(args, " ")
	}
	if err := os.WriteFile(path, []byte(rep.Markdown(cmd)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Written to %s\n", *out)
	return nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// parseInts parses a comma-separated list of positive whole numbers, in
// increasing order.
func parseInts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive whole number", f)
		}
		if len(ns) > 0 && n <= ns[len(ns)-1] {
			return nil, fmt.Errorf("the numbers must increase, got %s", s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}
