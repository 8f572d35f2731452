package main

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// notFoundPattern catches every path no other pattern matches.
const notFoundPattern = "/"

// newServer returns service01's whole HTTP API.
func newServer(logger *slog.Logger, cfg config, m *metrics, pub publisher, keys *idempotencyKeys) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, logger, cfg, m, pub, keys)
	return instrument(logger, m, mux)
}

// addRoutes maps the API. Each path also has a catch-all pattern without a
// method, so that a wrong method gets a 405 problem with an Allow header
// (ServeMux's own 405 is plain text); "/" answers 404 for everything else.
// A "GET" pattern also serves HEAD.
func addRoutes(mux *http.ServeMux, logger *slog.Logger, cfg config, m *metrics, pub publisher, keys *idempotencyKeys) {
	mux.Handle("POST /ping", handlePing(logger, cfg, pub, keys))
	mux.Handle("/ping", handleMethodNotAllowed("POST"))

	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("/healthz", handleMethodNotAllowed("GET", "HEAD"))

	mux.Handle("GET /readyz", handleReadyz(pub))
	mux.Handle("/readyz", handleMethodNotAllowed("GET", "HEAD"))

	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.Handle("/metrics", handleMethodNotAllowed("GET", "HEAD"))

	mux.Handle(notFoundPattern, handleNotFound())
}
