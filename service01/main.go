// Command service01 answers POST /ping by publishing a timestamped message to
// RabbitMQ, and answers only once the broker has confirmed that it is stored.
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

func main() {
	// Read .env from the working directory when there is one. Variables
	// already set in the environment win over it.
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "service01: read .env: %v\n", err)
		os.Exit(1)
	}
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "service01: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program: main only adds the process's environment and
// exit code, so tests can run it as it is. It returns nil after a clean
// shutdown on SIGINT or SIGTERM (or when ctx is done).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	flags.SetOutput(stderr)
	healthcheck := flags.Bool("healthcheck", false,
		"check that the service01 on this machine (port SERVICE01_PORT) is ready, for a container healthcheck: exit 0 if so, else 1")
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

	level := cfg.Level()
	logger := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level})).
		With(slog.String("service", "service01"))

	m := newMetrics()
	pub := newPublisher(cfg, logger, m)
	srv := &http.Server{
		Handler:           newServer(logger, cfg, m, pub, newIdempotencyKeys(cfg.IdempotencyTTL, cfg.IdempotencyKeys)),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		// Longer than the gateway keeps idle upstream connections (60 s), so
		// that nginx, not us, closes them: otherwise nginx may send a request
		// on a connection we are closing and answer 502.
		IdleTimeout: 120 * time.Second,
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	// Listen before anything else, so that a port in use fails at once.
	ln, err := net.Listen("tcp", cfg.HTTPAddr())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("starting",
		slog.String("addr", ln.Addr().String()),
		slog.String("rabbitmq", cfg.RabbitMQAddr()),
		slog.String("exchange", cfg.Exchange),
		slog.String("routing_key", cfg.RoutingKey),
		slog.String("queue", cfg.Queue),
		slog.String("queue_type", cfg.QueueType),
		slog.Int("publish_channels", cfg.PublishChannels),
		slog.Int("max_in_flight", cfg.MaxInFlight),
		slog.String("confirm_timeout", cfg.ConfirmTimeout.String()),
		slog.String("idempotency_ttl", cfg.IdempotencyTTL.String()),
		slog.Int("idempotency_keys", cfg.IdempotencyKeys),
	)

	// The publisher gets a context of its own, cancelled only once the HTTP
	// server has finished the requests in flight: they need the connection
	// to get their confirms.
	pubCtx, stopPublisher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPublisher()
	var pubErr error
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		pubErr = pub.Run(pubCtx)
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	var errs []error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case <-pubDone:
		// Run returns early only for a topology mismatch, which needs a person.
		logger.Error("stopping: the RabbitMQ topology does not match the configuration", slog.Any("error", pubErr))
	case err := <-serveErr:
		errs = append(errs, fmt.Errorf("http server: %w", err))
	}

	// Stop taking requests and wait for those in flight, which wait at most
	// SERVICE01_CONFIRM_TIMEOUT for their confirm.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ConfirmTimeout+time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("some requests did not finish in time", slog.Any("error", err))
		srv.Close()
	}
	stopPublisher()
	<-pubDone
	errs = append(errs, pubErr)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
