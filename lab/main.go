// Command lab runs the whole lab natively, without Docker: its own RabbitMQ
// node, both services and the nginx gateway, each on the ports in .env.
//
//	go run ./lab run [rabbitmq] [service01] [service02] [nginx]
//	go run ./lab ctl <rabbitmqctl arguments>
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
	"strings"
	"syscall"

	"github.com/joho/godotenv"
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
  lab ctl <args...>    run rabbitmqctl against the lab's broker, e.g. lab ctl list_queues name messages`

func run(ctx context.Context, args, environ []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig(environ)
	if err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	l := newLab(cfg, labOptions{root: root, state: filepath.Join(root, ".lab"), env: environ, echo: stdout})
	switch args[0] {
	case "run":
		return runLab(ctx, l, args[1:], stdout)
	case "ctl":
		out, err := l.rabbit.ctl(ctx, args[1:]...)
		fmt.Fprint(stdout, out)
		if err != nil {
			return fmt.Errorf("%w\n(is the lab's broker running? start it with make run)", err)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

func runLab(ctx context.Context, l *Lab, args []string, stdout io.Writer) error {
	parts, err := parseParts(args)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Starting %s (state and logs in %s)...\n", strings.Join(parts, ", "), relPath(l.root, l.state))
	if err := l.Start(ctx, parts); err != nil {
		return err
	}
	defer l.Stop()
	printBanner(stdout, l, parts)
	err = l.Wait(ctx)
	fmt.Fprintln(stdout, "Stopping the lab...")
	return err
}

func printBanner(w io.Writer, l *Lab, parts []string) {
	has := func(p string) bool { return slices.Contains(parts, p) }
	fmt.Fprintln(w, "\nThe lab is up:")
	if has("nginx") {
		fmt.Fprintf(w, "  gateway        %s   POST /ping, GET /pong, GET /pong/{id}, GET /healthz\n", l.GatewayURL())
	}
	if has("rabbitmq") {
		fmt.Fprintf(w, "  management UI  %s  login %s / %s\n", l.ManagementURL(), l.cfg.RabbitMQUser, l.cfg.RabbitMQPass)
		fmt.Fprintf(w, "  AMQP           amqp://localhost:%d\n", l.cfg.RabbitMQPort)
	}
	for _, name := range []string{"service01", "service02"} {
		if has(name) {
			fmt.Fprintf(w, "  %s      http://localhost:%d   /healthz /readyz /metrics\n", name, l.services[name].port)
		}
	}
	fmt.Fprintf(w, "  logs           %s\n", relPath(l.root, filepath.Join(l.state, "logs")))
	if has("nginx") && has("service01") {
		fmt.Fprintf(w, "\nTry:\n  curl --json '{\"msg\":\"hello\"}' %s/ping\n", l.GatewayURL())
		if has("service02") {
			fmt.Fprintf(w, "  curl %s/pong\n", l.GatewayURL())
		}
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}

// repoRoot finds the repository from the working directory: the folder with
// go.work, at or above it.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the lab from inside its repository (no go.work found above the working directory)")
		}
		dir = parent
	}
}

func relPath(base, target string) string {
	if rel, err := filepath.Rel(base, target); err == nil {
		return rel + string(filepath.Separator)
	}
	return target
}
