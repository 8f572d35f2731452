package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics holds service02's Prometheus metrics, in a registry of its own (no
// global default registry: two servers in one test process do not collide).
type metrics struct {
	registry *prometheus.Registry

	httpRequests *prometheus.CounterVec   // labels: route, code
	httpDuration *prometheus.HistogramVec // label: route

	consumed     prometheus.Counter // stored
	duplicates   prometheus.Counter // not stored: the id was already there
	redelivered  prometheus.Counter // came with the redelivered flag
	deadLettered prometheus.Counter // rejected as invalid
	connected    prometheus.Gauge   // 1 while consuming

	replayed      prometheus.Counter // stored from the event log on replay
	replaySkipped prometheus.Counter // invalid events skipped on replay
}

// newMetrics registers the metrics; the store's size and evictions are read
// from store when scraped.
func newMetrics(store *Store) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "HTTP requests answered, by route (the ServeMux pattern, or \"other\") and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_messages_consumed_total",
			Help: "Messages consumed and stored.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_messages_duplicate_total",
			Help: "Messages consumed (or replayed) but not stored because a message with the same id was already stored (redeliveries, or pings both replayed from the log and delivered by the queue).",
		}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_messages_redelivered_total",
			Help: "Deliveries that came with the redelivered flag: the broker had delivered them before, to a consumer that did not acknowledge them.",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_messages_dead_lettered_total",
			Help: "Invalid messages rejected to the dead-letter exchange.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_log_events_replayed_total",
			Help: "Events read from the event log on replay and stored.",
		}),
		replaySkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "service02_log_events_skipped_total",
			Help: "Invalid events skipped on replay: the queue dead-lettered them, but the log keeps them.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "service02_connected",
			Help: "1 while connected to RabbitMQ and consuming, else 0 (0 while it replays the event log).",
		}),
	}
	m.registry.MustRegister(
		m.httpRequests, m.httpDuration,
		m.consumed, m.duplicates, m.redelivered, m.deadLettered, m.connected,
		m.replayed, m.replaySkipped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "service02_store_messages",
			Help: "Messages held in the in-memory store.",
		}, func() float64 { return float64(store.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "service02_store_evicted_total",
			Help: "Messages evicted from the full store to make room for newer ones.",
		}, func() float64 { return float64(store.Evicted()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
