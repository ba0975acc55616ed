package app

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	latency     *prometheus.HistogramVec
	subscribers prometheus.Gauge
	sseEvents   *prometheus.CounterVec
	sseRefused  *prometheus.CounterVec
	sseClosed   prometheus.Counter
	refreshes   *prometheus.CounterVec
	// refreshWrites counts refresh requests waiting on Kafka.
	refreshWrites prometheus.Gauge
	notices       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reviewpipe_api_request_duration_seconds",
			Help:    "Time to answer a request, by route pattern and status code (event streams excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "code"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reviewpipe_api_sse_subscribers", Help: "Open server-sent event streams (SSE_MAX in all, SSE_MAX_PER_CLIENT per client).",
		}),
		sseRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_sse_refused_total", Help: "Event streams refused, by reason: per_client (429, SSE_MAX_PER_CLIENT) or global (503, SSE_MAX).",
		}, []string{"reason"}),
		sseClosed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reviewpipe_api_sse_write_failures_total", Help: "Event streams closed because a write failed: the reader went away or read nothing for SSE_WRITE_TIMEOUT.",
		}),
		refreshWrites: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reviewpipe_api_refresh_kafka_writes_in_flight", Help: "Refresh requests waiting for Kafka to take them (no PostgreSQL connection is held meanwhile).",
		}),
		sseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_sse_events_total", Help: "Events sent on streams, by event type.",
		}, []string{"event"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_refresh_requests_total", Help: "Refresh requests by outcome: queued, collapsed, rate_limited (per client, 429), global_limited (REFRESH_GLOBAL_RATE, 503), failed.",
		}, []string{"outcome"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_change_notices_total", Help: "Change notifications received from the sink, by whether a subscriber wanted them.",
		}, []string{"subscribed"}),
	}
	reg.MustRegister(m.latency, m.subscribers, m.sseEvents, m.sseRefused, m.sseClosed, m.refreshes, m.refreshWrites, m.notices)
	return m
}
