// Command lab runs the whole lab natively, without Docker: its own RabbitMQ
// node, both services and the nginx gateway, each on the ports in .env.
//
//	go run ./lab run [rabbitmq] [service01] [service02] [nginx]
//	go run ./lab stop
//	go run ./lab ctl <rabbitmqctl arguments>
//	go run ./lab load [-clients N] [-duration D]
//	go run ./lab bench [-smoke]
//	go run ./lab fault [-rate N] [scenario...]
//
// `make run` calls the first form. The module also holds the lab's
// end-to-end tests, which start the same parts on free ports.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/joho/godotenv"

	"pingpong/lab/bench"
	"pingpong/lab/fault"
	"pingpong/lab/runner"
)

func main() {
	// .env holds a user's overrides of the defaults; variables already set in
	// the environment win over it (godotenv.Load never overrides).
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintln(os.Stderr, "lab: .env:", err)
		os.Exit(1)
	}
	if err := run(context.Background(), os.Args[1:], os.Environ(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  lab run [part...]    start the lab (parts: rabbitmq service01 service02 nginx; default all)
  lab stop             stop this checkout's lab wherever it runs, or what an earlier run left running
  lab ctl <args...>    run rabbitmqctl against the lab's broker (a cluster's first node),
                       e.g. lab ctl list_queues name messages
  lab kill <node...>   kill -9 nodes of the running lab's broker, as a crash would, e.g.
                       lab kill lab-5673@localhost (make run starts a cluster's node again 20 s later)
  lab load [-clients N] [-duration D]
                       send POST /ping to the running lab's gateway from N clients (64) for D (10s),
                       and print the rate, the latency and every status; fails on any non-2xx
  lab bench [-smoke]   measure the lab beside its ceilings on a lab of its own on free ports; -h for the options
  lab fault [-rate N] [name...]
                       run the fault scenarios against a lab of their own on free ports and print the table;
                       -rate sets the load's pings per second (default 150)
                       (broker-restart broker-kill service02-kill service02-term service01-kill
                        service01-term memory-alarm poison gateway-reload retention; default all),
                       then the cluster's on a lab of three broker nodes (leader-kill partition rolling-restart)`

func run(ctx context.Context, args, environ []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	// The lab stops in order on Ctrl-C (SIGINT), on SIGTERM, and on SIGHUP,
	// which a closing terminal sends.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A write to a stdout that is gone (make run | tee, then Ctrl-C: tee
	// dies first) would otherwise kill the runner with SIGPIPE before it
	// has stopped the parts, leaving them running; ignored, the write just
	// fails, and the runner goes on stopping them.
	signal.Ignore(syscall.SIGPIPE)
	cfg, err := runner.LoadConfig(environ)
	if err != nil {
		return err
	}
	root, err := runner.RepoRoot()
	if err != nil {
		return err
	}
	// The state folder is .lab, or LAB_STATE: the doc test points a
	// chapter's lab kill at the chapter's lab with it.
	state := filepath.Join(root, ".lab")
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "LAB_STATE="); ok && v != "" {
			state = v
		}
	}
	l := runner.New(cfg, runner.Options{Root: root, State: state, Env: environ, Echo: stdout})
	switch args[0] {
	case "fault":
		return fault.Main(ctx, args[1:], stdout)
	case "run":
		return runLab(ctx, l, root, args[1:], stdout)
	case "stop":
		return runner.StopRecorded(l.State(), stdout, time.Minute)
	case "load":
		return bench.LoadCommand(ctx, l.GatewayURL(), args[1:], stdout)
	case "bench":
		return bench.Command(ctx, root, args[1:], stdout)
	case "kill":
		if len(args) < 2 {
			return fmt.Errorf("lab kill: name the nodes to kill, e.g. lab kill lab-5673@localhost\n%s", usage)
		}
		for _, node := range args[1:] {
			if err := runner.KillRecordedNode(l.State(), node, stdout); err != nil {
				return err
			}
		}
		return nil
	case "ctl":
		if nodes, epmd, ok := runner.RecordedBroker(state, cfg.RabbitMQPort); ok {
			// The running lab's broker as it runs: a cluster started with
			// RABBITMQ_NODES=3 make run (the nodes' names and cookie are
			// the cluster's), its port mapper where it is.
			cfg.Nodes = nodes
			l = runner.New(cfg, runner.Options{Root: root, State: state, Env: environ, Echo: stdout, EpmdPort: epmd})
		}
		out, err := l.Ctl(ctx, args[1:]...)
		fmt.Fprint(stdout, out)
		if err != nil {
			return fmt.Errorf("%w\n(is the lab's broker running? start it with make run)", err)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

func runLab(ctx context.Context, l *runner.Lab, root string, args []string, stdout io.Writer) error {
	parts, err := runner.ParseParts(args)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Starting %s (state and logs in %s)...\n", strings.Join(parts, ", "), relPath(root, l.State()))
	if err := l.Start(ctx, parts); err != nil {
		return err
	}
	defer l.Stop()
	printBanner(stdout, l, root, parts)
	err = l.Wait(ctx)
	fmt.Fprintln(stdout, "Stopping the lab...")
	return err
}

// printBanner says where everything is. It names localhost, as a person
// would type it.
func printBanner(w io.Writer, l *runner.Lab, root string, parts []string) {
	has := func(p string) bool { return slices.Contains(parts, p) }
	cfg := l.Config()
	gateway := "http://localhost:" + strconv.Itoa(cfg.GatewayPort)
	fmt.Fprintln(w, "\nThe lab is up:")
	if has("nginx") {
		fmt.Fprintf(w, "  gateway        %s   POST /ping, GET /pong, GET /pong/{id}, GET /healthz\n", gateway)
	}
	if has("rabbitmq") {
		fmt.Fprintf(w, "  management UI  http://localhost:%d  login %s / %s\n", cfg.ManagementPort, cfg.RabbitMQUser, cfg.RabbitMQPass)
		fmt.Fprintf(w, "  AMQP           amqp://localhost:%d\n", cfg.RabbitMQPort)
		if cfg.Nodes > 1 {
			fmt.Fprintf(w, "  cluster        %s (AMQP on %d to %d, UI on %d to %d)\n", strings.Join(l.Nodes(), ", "),
				cfg.RabbitMQPort, cfg.RabbitMQPort+cfg.Nodes-1, cfg.ManagementPort, cfg.ManagementPort+cfg.Nodes-1)
		}
	}
	if has("service01") {
		fmt.Fprintf(w, "  service01      http://localhost:%d   /healthz /readyz /metrics\n", cfg.Service01Port)
	}
	if has("service02") {
		fmt.Fprintf(w, "  service02      http://localhost:%d   /healthz /readyz /metrics\n", cfg.Service02Port)
	}
	fmt.Fprintf(w, "  logs           %s\n", relPath(root, filepath.Join(l.State(), "logs")))
	if has("nginx") && has("service01") {
		fmt.Fprintf(w, "\nTry:\n  curl --json '{\"msg\":\"hello\"}' %s/ping\n", gateway)
		if has("service02") {
			fmt.Fprintf(w, "  curl %s/pong\n", gateway)
		}
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}

func relPath(base, target string) string {
	if rel, err := filepath.Rel(base, target); err == nil {
		return rel + string(filepath.Separator)
	}
	return target
}
