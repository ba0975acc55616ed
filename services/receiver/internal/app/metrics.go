package app

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	answers           *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	kafkaWrite        *prometheus.HistogramVec
	events            *prometheus.CounterVec
	duplicates        *prometheus.CounterVec
	deadLetters       *prometheus.CounterVec
	signatureFailures *prometheus.CounterVec
	refusals          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_webhook_answers_total", Help: "Webhook deliveries answered, by provider and HTTP status code.",
		}, []string{"provider", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_webhook_duration_seconds", Help: "Time from request to answer of a webhook delivery.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider"}),
		kafkaWrite: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "reviewpipe_kafka_write_duration_seconds", Help: "Time for Kafka to acknowledge a write (acks=all), by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_receiver_events_total", Help: "Raw events published to reviews.raw.v1 from webhooks.",
		}, []string{"provider"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_webhook_duplicates_total", Help: "Redelivered webhook-ids answered as the first time (2xx, or the same 400) without a second write.",
		}, []string{"provider"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_dead_letters_total", Help: "Records sent to reviews.dlq.v1, by stage's provider and reason.",
			ConstLabels: prometheus.Labels{"stage": "receiver"},
		}, []string{"provider", "reason"}),
		signatureFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_webhook_signature_failures_total", Help: "Deliveries refused with 401.",
		}, []string{"provider"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_webhook_refusals_total",
			Help: "Deliveries refused by a limit, by provider and reason: body_timeout (408), body_too_large (413), in_flight (429), pending_bytes (503 at once), kafka_unavailable (503 after the Kafka deadline or a failed write).",
		}, []string{"provider", "reason"}),
	}
	reg.MustRegister(m.answers, m.latency, m.kafkaWrite, m.events, m.duplicates, m.deadLetters, m.signatureFailures, m.refusals)
	return m
}
