// Command service02 consumes the pings service01 publishes into a bounded
// in-memory store, and serves them at GET /pong and GET /pong/{id}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/joho/godotenv"
)

// httpShutdownTimeout bounds the wait for HTTP requests in flight at
// shutdown; with the consumer's close it stays within the 10 s that Docker
// gives a container between SIGTERM and SIGKILL.
const httpShutdownTimeout = 5 * time.Second

func main() {
	// Load .env from the working directory when there is one. It never
	// overrides a variable already set, so the environment wins.
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "service02: read .env: %v\n", err)
		os.Exit(1)
	}
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "service02: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program: it returns when ctx is done or on SIGINT or
// SIGTERM, after an orderly shutdown (nil), or on an error that stops the
// service.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet("service02", flag.ContinueOnError)
	flags.SetOutput(stderr)
	healthcheck := flags.Bool("healthcheck", false,
		"ask the service02 running on this machine (GET /readyz on SERVICE02_PORT) whether it is ready; exit 0 if so, else 1")
	perMinute := flags.Bool("per-minute", false,
		"print how many pings each minute had, read from the event log (RABBITMQ_LOG_STREAM), and exit: a second read model of the same log")
	from := flags.String("from", "first",
		`with -per-minute, where in the log to start: "first" (the oldest event held), a time (2026-12-02T18:40:00Z) or a duration ago (10m)`)
	if err := flags.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, err := parseConfig(getenv)
	if err != nil {
		return err
	}
	if *healthcheck {
		return checkReady(ctx, cfg.Port)
	}
	if *perMinute {
		return printPerMinute(ctx, cfg.RabbitMQConfig, *from, stdout)
	}

	// Every line names the service, so the lab's logs can be read together.
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.Level()})).
		With(slog.String("service", "service02"))
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	store := NewStore(cfg.StoreCapacity)
	m := newMetrics(store)
	cons := newConsumer(cfg, fmt.Sprintf("service02-%s-%d", hostname, os.Getpid()), store, m, logger)
	srv := &http.Server{
		Addr:              cfg.HTTPAddr(),
		Handler:           NewServer(logger, store, cons, m),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		// Above nginx's 60 s upstream keepalive timeout: nginx must be the
		// one to close an idle connection, else it may send a request on a
		// connection the service is closing and answer 502.
		IdleTimeout: 120 * time.Second,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	// Listen before consuming, and whether or not the broker is up: /healthz
	// and /readyz answer from the start.
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return fmt.Errorf("%w (is SERVICE02_PORT=%d already in use?)", err, cfg.Port)
	}
	logger.Info("listening", "addr", ln.Addr().String(), "broker", cfg.RabbitMQAddr(), "queue", cfg.Queue)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	// The consumer's context is cancelled only once the HTTP server has
	// stopped (below), not directly by the signal.
	consumeCtx, stopConsuming := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsuming()
	consumeErr := make(chan error, 1)
	go func() { consumeErr <- cons.Run(consumeCtx) }()

	consumerDone := false
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("serve HTTP: %w", err)
	case err = <-consumeErr: // a topology mismatch
		consumerDone = true
	}
	stop() // from now on a second Ctrl-C stops the process at once

	// 1. Take no new requests; finish the ones in flight.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), httpShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("HTTP shutdown", "error", err.Error())
	}
	// 2. Stop consuming: cancel, store and ack what was delivered, close.
	stopConsuming()
	if !consumerDone {
		if cerr := <-consumeErr; err == nil {
			err = cerr
		}
	}
	logger.Info("stopped")
	return err
}
