package app

import "github.com/prometheus/client_golang/prometheus"

// metrics are the poller's Prometheus series. Labels are bounded: provider
// (configured providers), stream (live, refresh, backfill), outcome (the
// fixed set of feed.Outcome plus breaker_open), source, kind, status.
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

func newMetrics(reg prometheus.Registerer) *metrics {
	p := []string{"provider"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_requests_total",
			Help: "Provider API requests, by provider, stream (live, refresh, backfill) and outcome (ok, rate_limited, unavailable, server_error, client_error, gone, timeout, network_error, bad_answer, too_large, redirect, breaker_open, canceled).",
		}, []string{"provider", "stream", "outcome"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_poller_request_duration_seconds", Help: "Time from sending a provider API request to its last byte.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, p),
		budgetRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_rate_limit_remaining",
			Help: "The provider's X-RateLimit-Remaining on its latest answer (requests left in its bucket).",
		}, p),
		budgetTokens: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_budget_tokens", Help: "Tokens in the poller's own bucket for the provider.",
		}, p),
		rateLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_rate_limit_per_second",
			Help: "Request rate the poller allows itself: min(POLL_RATE_<PROVIDER>, the provider's X-RateLimit-Limit).",
		}, p),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_breaker_state", Help: "Circuit breaker of the provider: 0 closed, 1 half-open, 2 open.",
		}, p),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_breaker_transitions_total", Help: "Circuit breaker state changes, by the state entered.",
		}, []string{"provider", "state"}),
		cursorLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_cursor_lag_seconds",
			Help: "Now minus the time up to which the provider's change feed is known to be read (the start of the last live pass that reached the feed's end); grows when sync falls behind or fails.",
		}, p),
		cursorTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_cursor_timestamp_seconds",
			Help: "The provider record time the saved live cursor stands at (Unix seconds), for providers whose cursor is a time.",
		}, p),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_last_success_timestamp_seconds",
			Help: "When a page of the provider was last fetched, published and recorded (Unix seconds).",
		}, p),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_events_published_total",
			Help: "Raw events published to reviews.raw.v1 by the poller, by provider and source (poll, refresh, backfill).",
		}, []string{"provider", "source"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_dead_letters_total", Help: "Records sent to reviews.dlq.v1, by provider and reason.",
			ConstLabels: prometheus.Labels{"stage": "poller"},
		}, []string{"provider", "reason"}),
		kafkaWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_kafka_write_duration_seconds", Help: "Time for Kafka to acknowledge a write (acks=all), by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_lease_held", Help: "1 while this poller replica holds the provider's lease.",
		}, p),
		syncRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_sync_requests_total",
			Help: "Sync requests consumed from reviews.sync-requests.v1, by kind and outcome (queued, duplicate, refused, dead_lettered).",
		}, []string{"kind", "outcome"}),
		backfillJobs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_backfill_jobs", Help: "Unfinished backfill jobs of the provider, by status (queued, running).",
		}, []string{"provider", "status"}),
		backfillPages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_backfill_pages_total", Help: "Backfill pages fetched and published.",
		}, p),
		backfillEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_backfill_events_total", Help: "Events published by backfills.",
		}, p),
		backfillDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_backfill_jobs_finished_total", Help: "Backfill jobs finished, by status (done, failed).",
		}, []string{"provider", "status"}),
		backfillCursor: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_backfill_cursor_timestamp_seconds",
			Help: "How far the running backfill has read (provider record time, or the newest change time read for token cursors), Unix seconds; 0 when none runs.",
		}, p),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_poller_refreshes_total", Help: "Movie refreshes served, by status (done, failed).",
		}, []string{"provider", "status"}),
		refreshQueued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_poller_refresh_jobs", Help: "Unfinished refresh requests of the provider.",
		}, p),
	}
	reg.MustRegister(m.requests, m.requestSeconds, m.budgetRemaining, m.budgetTokens, m.rateLimit, m.breakerState,
		m.breakerChanges, m.cursorLag, m.cursorTime, m.lastSuccess, m.events, m.deadLetters, m.kafkaWrite, m.leaseHeld,
		m.syncRequests, m.backfillJobs, m.backfillPages, m.backfillEvents, m.backfillDone, m.backfillCursor,
		m.refreshes, m.refreshQueued)
	return m
}
