package main

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// notFoundPattern catches every path no other pattern matches.
const notFoundPattern = "/"

// NewServer returns service02's HTTP API.
func NewServer(logger *slog.Logger, store *Store, ready readiness, m *metrics) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, store, ready, m)
	return instrument(logger, m, mux)
}

// addRoutes maps the whole API surface. A GET pattern also answers HEAD.
func addRoutes(mux *http.ServeMux, store *Store, ready readiness, m *metrics) {
	mux.Handle("GET /pong", handlePong(store))
	mux.Handle("GET /pong/{id}", handlePongID(store))
	mux.Handle("GET /healthz", handleHealthz())
	mux.Handle("GET /readyz", handleReadyz(ready))
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))

	// For a known path with another method, ServeMux answers 405 in plain
	// text; these method-less patterns, less specific than the ones above,
	// answer with a problem instead.
	for _, path := range []string{"/pong", "/pong/{id}", "/healthz", "/readyz", "/metrics"} {
		mux.Handle(path, handleMethodNotAllowed("GET, HEAD"))
	}
	mux.Handle(notFoundPattern, handleNotFound())
}
