package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

type metrics struct {
	batchSize   prometheus.Histogram
	txSeconds   *prometheus.HistogramVec
	rows        *prometheus.CounterVec
	freshness   *prometheus.HistogramVec
	deadLetters *prometheus.CounterVec
	breaker     prometheus.Gauge
	movies      prometheus.Counter
	// group is the consumer group's metrics, kept by kafkax.RunGroup:
	// kafkax.LagMetric{group="sink"}, the name the sink's lag had before.
	group *kafkax.GroupMetrics
}

// Outcomes of a record, the label values of reviewpipe_sink_rows_total.
const (
	outcomeWritten    = "written"
	outcomeStale      = "stale"
	outcomeSuperseded = "superseded"
	outcomeReplayed   = "replayed"
	outcomeDead       = "dead_lettered"
)

func newMetrics(reg prometheus.Registerer) metrics {
	sec := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	m := metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "reviewpipe_sink_batch_size", Help: "Records per batch handed to the sink.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
		}),
		txSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_sink_transaction_duration_seconds", Help: "Time of one batch's PostgreSQL transaction, by outcome.",
			Buckets: sec,
		}, []string{"outcome"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_sink_rows_total",
			Help: "Records by what the sink did with them: written, stale (lost to the stored row: older, exact duplicate or tie lost), superseded (lost to a greater change of the same id in the batch), replayed (below the stored offset), dead_lettered.",
		}, []string{"outcome"}),
		freshness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_freshness_seconds", Help: "End-to-end freshness: from the accepted-at header (the pipeline accepted the change) to the commit that made it readable.",
			Buckets: []float64{.05, .1, .25, .5, .75, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300},
		}, []string{"kind"}),
		group: kafkax.NewConsumerMetrics(reg).Group(kafkax.GroupSink),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_dead_letters_total", Help: "Records sent to reviews.dlq.v1, by reason.",
			ConstLabels: prometheus.Labels{"stage": "sink"},
		}, []string{"reason"}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "reviewpipe_sink_breaker_state", Help: "The PostgreSQL circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		movies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reviewpipe_sink_movies_changed_total", Help: "Movies whose set of visible reviews a batch changed (one per movie per batch).",
		}),
	}
	for _, o := range []string{outcomeWritten, outcomeStale, outcomeSuperseded, outcomeReplayed, outcomeDead} {
		m.rows.WithLabelValues(o)
	}
	reg.MustRegister(m.batchSize, m.txSeconds, m.rows, m.freshness, m.deadLetters, m.breaker, m.movies)
	return m
}
