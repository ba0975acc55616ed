package app

import "github.com/prometheus/client_golang/prometheus"

// metrics are the poller's Prometheus series. Labels are bounded: provider
// (configured providers), stream (live, refresh, backfill), outcome (the
// fixed set of feed.Outcome), source, kind, status.
type metrics struct {
	requests        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	budgetRemaining *prometheus.GaugeVec
	budgetTokens    *prometheus.GaugeVec
	rateLimit       *prometheus.GaugeVec
	breakerState    *prometheus.GaugeVec
	breakerChanges  *prometheus.CounterVec
	cursorLag       *prometheus.GaugeVec
	cursorTime      *prometheus.GaugeVec
	lastSuccess     *prometheus.GaugeVec
	events          *prometheus.CounterVec
	deadLetters     *prometheus.CounterVec
	kafkaWrite      *prometheus.HistogramVec
	leaseHeld       *prometheus.GaugeVec
	syncRequests    *prometheus.CounterVec
	backfillJobs    *prometheus.GaugeVec
	backfillPages   *prometheus.CounterVec
	backfillEvents  *prometheus.CounterVec
	backfillDone    *prometheus.CounterVec
	backfillCursor  *prometheus.GaugeVec
	refreshes       *prometheus.CounterVec
	refreshQueued   *prometheus.GaugeVec
}

// newMetrics makes the poller's metrics and registers them on reg.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := factory{reg}
	p := "provider"
	return &metrics{
		requests: f.counter("reviewpipe_poller_requests_total",
			"Provider API requests, by provider, stream (live, refresh, backfill) and outcome (ok, rate_limited, unavailable, server_error, client_error, gone, timeout, network_error, bad_answer, too_large, redirect, breaker_open, canceled).", p, "stream", "outcome"),
		requestSeconds: f.histogram("reviewpipe_poller_request_duration_seconds", "Time from sending a provider API request to its last byte.",
			[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, p),
		budgetRemaining: f.gauge("reviewpipe_poller_rate_limit_remaining",
			"The provider's X-RateLimit-Remaining on its latest answer (requests left in its bucket).", p),
		budgetTokens: f.gauge("reviewpipe_poller_budget_tokens",
			"Tokens in the poller's own bucket for the provider.", p),
		rateLimit: f.gauge("reviewpipe_poller_rate_limit_per_second",
			"Request rate the poller allows itself: min(POLL_RATE_<PROVIDER>, the provider's X-RateLimit-Limit).", p),
		breakerState: f.gauge("reviewpipe_poller_breaker_state",
			"Circuit breaker of the provider: 0 closed, 1 half-open, 2 open.", p),
		breakerChanges: f.counter("reviewpipe_poller_breaker_transitions_total",
			"Circuit breaker state changes, by the state entered.", p, "state"),
		cursorLag: f.gauge("reviewpipe_poller_cursor_lag_seconds",
			"Now minus the time up to which the provider's change feed is known to be read (the start of the last live pass that reached the feed's end); grows when sync falls behind or fails.", p),
		cursorTime: f.gauge("reviewpipe_poller_cursor_timestamp_seconds",
			"The provider record time the saved live cursor stands at (Unix seconds), for providers whose cursor is a time.", p),
		lastSuccess: f.gauge("reviewpipe_poller_last_success_timestamp_seconds",
			"When a page of the provider was last fetched, published and recorded (Unix seconds).", p),
		events: f.counter("reviewpipe_poller_events_published_total",
			"Raw events published to reviews.raw.v1 by the poller, by provider and source (poll, refresh, backfill).", p, "source"),
		deadLetters: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_dead_letters_total", Help: "Records sent to reviews.dlq.v1, by provider and reason.",
			ConstLabels: prometheus.Labels{"stage": "poller"},
		}, []string{p, "reason"})),
		kafkaWrite: f.histogram("reviewpipe_kafka_write_duration_seconds", "Time for Kafka to acknowledge a write (acks=all), by outcome.",
			[]float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10}, "outcome"),
		leaseHeld: f.gauge("reviewpipe_poller_lease_held",
			"1 while this poller replica holds the provider's lease.", p),
		syncRequests: f.counter("reviewpipe_poller_sync_requests_total",
			"Sync requests consumed from reviews.sync-requests.v1, by kind and outcome (queued, duplicate, refused, dead_lettered).", "kind", "outcome"),
		backfillJobs: f.gauge("reviewpipe_poller_backfill_jobs",
			"Unfinished backfill jobs of the provider, by status (queued, running).", p, "status"),
		backfillPages: f.counter("reviewpipe_poller_backfill_pages_total",
			"Backfill pages fetched and published.", p),
		backfillEvents: f.counter("reviewpipe_poller_backfill_events_total",
			"Events published by backfills.", p),
		backfillDone: f.counter("reviewpipe_poller_backfill_jobs_finished_total",
			"Backfill jobs finished, by status (done, failed).", p, "status"),
		backfillCursor: f.gauge("reviewpipe_poller_backfill_cursor_timestamp_seconds",
			"How far the running backfill has read (provider record time, or the newest change time read for token cursors), Unix seconds; 0 when none runs.", p),
		refreshes: f.counter("reviewpipe_poller_refreshes_total",
			"Movie refreshes served, by status (done, failed).", p, "status"),
		refreshQueued: f.gauge("reviewpipe_poller_refresh_jobs",
			"Unfinished refresh requests of the provider.", p),
	}
}

// factory makes metric vectors and registers each on reg.
type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string, labels ...string) *prometheus.CounterVec {
	return register(f.reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

func (f factory) gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return register(f.reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
}

func (f factory) histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return register(f.reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
}

// register registers c on reg and returns it; it panics as MustRegister does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	reg.MustRegister(c)
	return c
}
