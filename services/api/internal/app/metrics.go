package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reviewpipe/reviewpipe/services/api/internal/cache"
)

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
	// Answer cache lookups, by kind of answer.
	cacheHitPage, cacheMissPage, cacheHitReview, cacheMissReview prometheus.Counter
	// cacheReloads counts pages read again after a change (CacheRefresh).
	cacheReloads *prometheus.CounterVec
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
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reviewpipe_api_cache_lookups_total",
		Help: "Answer cache lookups by kind (page: a movie's first page; review: one review, 404s included) and result (hit, miss; a miss reads PostgreSQL).",
	}, []string{"kind", "result"})
	m.cacheHitPage, m.cacheMissPage = lookups.WithLabelValues("page", "hit"), lookups.WithLabelValues("page", "miss")
	m.cacheHitReview, m.cacheMissReview = lookups.WithLabelValues("review", "hit"), lookups.WithLabelValues("review", "miss")
	m.cacheReloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reviewpipe_api_cache_page_reloads_total",
		Help: "Movie pages read again right after a change dropped them from the answer cache while readers were served them (API_CACHE_REFRESH), by result: stored, refused (a later change came first), failed, skipped (4,096 pages already waiting).",
	}, []string{"result"})
	reg.MustRegister(m.latency, m.subscribers, m.sseEvents, m.sseRefused, m.sseClosed, m.refreshes, m.refreshWrites, m.notices, lookups,
		m.cacheReloads)
	return m
}

// registerCache exports the answer cache's levels and counters.
func (m *metrics) registerCache(reg prometheus.Registerer, c *cache.Cache[*answer]) {
	stat := func(f func(cache.Stats) float64) func() float64 { return func() float64 { return f(c.Stats()) } }
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "reviewpipe_api_cache_bytes",
			Help: "Bytes the answer cache holds (answers, keys and a fixed overhead per entry), at most API_CACHE_BYTES."},
			stat(func(s cache.Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "reviewpipe_api_cache_max_bytes",
			Help: "API_CACHE_BYTES: the answer cache's bound (0: disabled)."},
			func() float64 { return float64(c.MaxBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "reviewpipe_api_cache_entries",
			Help: "Answers the cache holds."},
			stat(func(s cache.Stats) float64 { return float64(s.Entries) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "reviewpipe_api_cache_evictions_total",
			Help: "Answers evicted, least recently used first, to stay within API_CACHE_BYTES."},
			stat(func(s cache.Stats) float64 { return float64(s.Evictions) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "reviewpipe_api_cache_invalidations_total",
			Help: "Answers dropped because a change notification (or a listener reconnect) made them possibly wrong."},
			stat(func(s cache.Stats) float64 { return float64(s.Invalidated) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "reviewpipe_api_cache_fills_refused_total",
			Help: "Answers read from PostgreSQL but not cached: a change was announced, or the listener reconnected, while they were read."},
			stat(func(s cache.Stats) float64 { return float64(s.Refused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "reviewpipe_api_cache_flushes_total",
			Help: "Whole-cache flushes: each loss and each (re)connection of the change listener."},
			stat(func(s cache.Stats) float64 { return float64(s.Flushes) })),
	)
}
