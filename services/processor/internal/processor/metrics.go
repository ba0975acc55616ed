package processor

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

var latencyBuckets = []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// metrics are the processor's Prometheus metrics. Labels are bounded:
// provider (the registry's names or "unknown"), decision, op, reason, step,
// partition (the input topic's partitions). The consumer lag is kafkax's
// (kafkax.LagMetric, group="processor").
type metrics struct {
	in          *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	out         *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	batch       prometheus.Histogram
	step        *prometheus.HistogramVec
	writeErrors *prometheus.CounterVec
	stateKeys   *prometheus.GaugeVec
	restore     prometheus.Histogram
	restored    prometheus.Counter
	badState    prometheus.Counter
	// group is the consumer group's metrics, kept by kafkax.RunGroup: the
	// lag per partition held.
	group *kafkax.GroupMetrics
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		in: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_processor_records_in_total",
			Help: "Records consumed from reviews.raw.v1 and fully handled, by provider (\"unknown\" when the envelope or provider is not recognised).",
		}, []string{"provider"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_processor_decisions_total",
			Help: "Dedupe decisions on normalized records, by provider and decision (new, update, duplicate, stale, conflict_won, conflict_lost, resend).",
		}, []string{"provider", "decision"}),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_processor_records_out_total",
			Help: "Records written to reviews.normalized.v1, by provider and op.",
		}, []string{"provider", "op"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "reviewpipe_dead_letters_total",
			Help:        "Records sent to reviews.dlq.v1, by provider and reason.",
			ConstLabels: prometheus.Labels{"stage": "processor"},
		}, []string{"provider", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reviewpipe_processor_latency_seconds",
			Help:    "Time from a change's acceptance by the pipeline (accepted-at header) to its normalized record being acknowledged by Kafka, by provider.",
			Buckets: latencyBuckets,
		}, []string{"provider"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reviewpipe_processor_batch_duration_seconds",
			Help:    "Time to handle one batch of one partition, all writes acknowledged.",
			Buckets: latencyBuckets,
		}),
		step: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "reviewpipe_processor_step_duration_seconds",
			Help:    "Time spent per batch in each step (normalize, dedupe, changelog, output, deadletter).",
			Buckets: latencyBuckets,
		}, []string{"step"}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_processor_write_errors_total",
			Help: "Failed Kafka writes (the batch is retried), by step.",
		}, []string{"step"}),
		stateKeys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "reviewpipe_processor_state_keys",
			Help: "Review keys in the keyed state of each partition this instance holds.",
		}, []string{"partition"}),
		restore: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reviewpipe_processor_restore_duration_seconds",
			Help:    "Time to restore one partition's state from reviews.processor-state.v1 on assignment.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reviewpipe_processor_restored_records_total",
			Help: "Changelog records read while restoring state.",
		}),
		badState: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reviewpipe_processor_state_decode_errors_total",
			Help: "Changelog records that could not be decoded while restoring (the key is treated as unseen).",
		}),
		group: kafkax.NewConsumerMetrics(reg).Group(kafkax.GroupProcessor).WithDeprecatedLag(
			"reviewpipe_processor_consumer_lag",
			"Records of reviews.raw.v1 not yet handled, per partition held, after the last batch."),
	}
	reg.MustRegister(m.in, m.decisions, m.out, m.deadLetters, m.latency, m.batch, m.step, m.writeErrors,
		m.stateKeys, m.restore, m.restored, m.badState)
	return m
}

// observe runs one step of a batch and records its duration.
func (m *metrics) observe(step string, f func() error) error {
	start := time.Now()
	err := f()
	m.step.WithLabelValues(step).Observe(time.Since(start).Seconds())
	if err != nil && (step == stepChangelog || step == stepOutput || step == stepDeadLetter) {
		m.writeErrors.WithLabelValues(step).Inc()
	}
	return err
}

// forget drops the series of a partition given up (RunGroup drops its lag).
func (m *metrics) forget(partition int) {
	m.stateKeys.DeleteLabelValues(strconv.Itoa(partition))
}

func decisionLabels() []string {
	out := make([]string, len(dedupe.Decisions))
	for i, d := range dedupe.Decisions {
		out[i] = d.String()
	}
	return out
}
