package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Publish results, the values of service01_publishes_total's result label.
const (
	resultConfirmed   = "confirmed"   // the broker confirmed it: it is stored
	resultNacked      = "nacked"      // the broker refused it (basic.nack)
	resultReturned    = "returned"    // no queue was bound to take it
	resultTimeout     = "timeout"     // SERVICE01_CONFIRM_TIMEOUT ran out, waiting for a channel or for the confirm
	resultUnavailable = "unavailable" // not connected, or the connection failed meanwhile
	resultBlocked     = "blocked"     // the broker blocks publishers (memory or disk alarm)
)

// metrics are service01's Prometheus metrics, in a registry of their own
// rather than the global default one, so that tests can build as many
// servers as they like.
type metrics struct {
	registry        *prometheus.Registry
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	publishes       *prometheus.CounterVec
	confirmDuration prometheus.Histogram
	connected       prometheus.Gauge
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f := promauto.With(reg)
	m := &metrics{
		registry: reg,
		httpRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by route (the mux pattern, or \"other\") and status code.",
		}, []string{"route", "code"}),
		httpDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		publishes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "service01_publishes_total",
			Help: "Messages service01 tried to publish, by result: confirmed, nacked, returned, timeout, unavailable or blocked.",
		}, []string{"result"}),
		confirmDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "service01_confirm_duration_seconds",
			Help:    "Time from publishing a message to the broker's confirm (ack, nack or return).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "service01_connected",
			Help: "1 while service01 is connected to RabbitMQ with its topology declared, else 0.",
		}),
	}
	// Export every result from the start, at 0, so that rates and alerts work
	// before the first failure happens.
	for _, r := range []string{resultConfirmed, resultNacked, resultReturned, resultTimeout, resultUnavailable, resultBlocked} {
		m.publishes.WithLabelValues(r)
	}
	return m
}
