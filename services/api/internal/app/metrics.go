package app

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	latency     *prometheus.HistogramVec
	subscribers prometheus.Gauge
	sseEvents   *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	notices     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reviewpipe_api_request_duration_seconds",
			Help:    "Time to answer a request, by route pattern and status code (event streams excluded).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route", "code"}),
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reviewpipe_api_sse_subscribers", Help: "Open server-sent event streams.",
		}),
		sseEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_sse_events_total", Help: "Events sent on streams, by event type.",
		}, []string{"event"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_refresh_requests_total", Help: "Refresh requests by outcome: queued, collapsed, rate_limited, failed.",
		}, []string{"outcome"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_api_change_notices_total", Help: "Change notifications received from the sink, by whether a subscriber wanted them.",
		}, []string{"subscribed"}),
	}
	reg.MustRegister(m.latency, m.subscribers, m.sseEvents, m.refreshes, m.notices)
	return m
}
