// Package app is the webhook receiver: it checks Standard Webhooks
// signatures, splits each delivery into raw events with the provider's
// adapter, and answers 2xx only after Kafka acknowledged every event with
// acks=all.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// Config configures the receiver.
type Config struct {
	// Keys holds each provider's webhook keys (several during rotation).
	Keys map[string][][]byte
	// MaxBody is the largest accepted body in bytes (default 1 MiB).
	MaxBody int64
	// MaxInFlight bounds deliveries being handled at once (default 256);
	// past it the receiver answers 429.
	MaxInFlight int
	// KafkaDeadline bounds the wait for Kafka's acknowledgement (default
	// 5s); past it the receiver answers 503.
	KafkaDeadline time.Duration
	// Tolerance is the allowed timestamp skew (default 5 minutes).
	Tolerance time.Duration
	// DedupeSize is how many recent webhook-ids are remembered (default 100000).
	DedupeSize int
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.MaxBody == 0 {
		c.MaxBody = 1 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.KafkaDeadline == 0 {
		c.KafkaDeadline = 5 * time.Second
	}
	if c.Tolerance == 0 {
		c.Tolerance = webhook.DefaultTolerance
	}
	if c.DedupeSize == 0 {
		c.DedupeSize = 100_000
	}
	switch {
	case c.MaxBody < 1024:
		return fmt.Errorf("WEBHOOK_MAX_BODY must be at least 1024 bytes, got %d", c.MaxBody)
	case c.MaxInFlight < 1:
		return fmt.Errorf("RECEIVER_MAX_IN_FLIGHT must be at least 1, got %d", c.MaxInFlight)
	}
	return nil
}

// Writer is what the receiver needs of a Kafka writer: a synchronous,
// acks=all WriteMessages (see kafkax.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Receiver handles webhook deliveries. Safe for concurrent use.
type Receiver struct {
	cfg      Config
	adapters *provider.Registry
	raw      Writer
	dlq      Writer
	log      *zap.Logger
	inflight chan struct{}
	seen     *recentIDs
	now      func() time.Time
	m        metrics
}

// New returns a receiver publishing raw events to raw and refused bodies to dlq.
func New(cfg Config, adapters *provider.Registry, raw, dlq Writer, log *zap.Logger, reg prometheus.Registerer) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Receiver{
		cfg: cfg, adapters: adapters, raw: raw, dlq: dlq, log: log,
		inflight: make(chan struct{}, cfg.MaxInFlight),
		seen:     newRecentIDs(cfg.DedupeSize),
		now:      time.Now,
		m:        newMetrics(reg),
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reviewpipe_webhook_in_flight",
		Help: "Deliveries being handled now; at RECEIVER_MAX_IN_FLIGHT more are answered 429.",
	}, func() float64 { return float64(len(r.inflight)) }))
	for _, name := range adapters.Names() {
		if len(cfg.Keys[name]) == 0 {
			log.Warn("no webhook secret configured: deliveries for this provider will be answered 401",
				zap.String("provider", name))
		}
	}
	return r, nil
}

// Routes adds the webhook route to mux.
func (rc *Receiver) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /webhooks/{provider}", rc.handle)
}

// delivered is the body of a 200: the delivery is stored ("accepted") or
// was already ("duplicate").
type delivered struct {
	Status    string   `json:"status"`
	WebhookID string   `json:"webhook_id"`
	Events    int      `json:"events,omitempty"`
	EventIDs  []string `json:"event_ids,omitempty"`
}

// answer is one outcome of a delivery.
type answer struct {
	code       int
	msg        string
	retryAfter int
	body       any
}

func (rc *Receiver) handle(w http.ResponseWriter, r *http.Request) {
	start := rc.now()
	name := r.PathValue("provider")
	adapter, known := rc.adapters.Get(name)
	label := name
	if !known {
		label = "unknown"
	}
	a := rc.deliver(r, name, adapter, known)
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	if a.code >= 400 {
		obs.WriteError(w, a.code, a.msg)
	} else {
		obs.WriteJSON(w, a.code, a.body)
	}
	rc.m.answers.WithLabelValues(label, strconv.Itoa(a.code)).Inc()
	rc.m.latency.WithLabelValues(label).Observe(time.Since(start).Seconds())
	if a.code >= 500 {
		rc.log.Warn("webhook not accepted", zap.String("provider", label), zap.Int("code", a.code), zap.String("error", a.msg))
	} else if a.code >= 400 {
		rc.log.Info("webhook refused", zap.String("provider", label), zap.Int("code", a.code), zap.String("error", a.msg))
	}
}

func (rc *Receiver) deliver(r *http.Request, name string, adapter provider.Adapter, known bool) answer {
	if !known {
		return answer{code: http.StatusNotFound, msg: fmt.Sprintf("unknown provider %q", name)}
	}
	select {
	case rc.inflight <- struct{}{}:
		defer func() { <-rc.inflight }()
	default:
		return answer{code: http.StatusTooManyRequests, retryAfter: 1,
			msg: fmt.Sprintf("the receiver is handling %d deliveries already; retry later", rc.cfg.MaxInFlight)}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return answer{code: http.StatusUnsupportedMediaType,
			msg: fmt.Sprintf("content type must be application/json, got %q", r.Header.Get("Content-Type"))}
	}
	if r.ContentLength > rc.cfg.MaxBody {
		return answer{code: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("body of %d bytes is over the limit of %d bytes", r.ContentLength, rc.cfg.MaxBody)}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, rc.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return answer{code: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("body is over the limit of %d bytes", rc.cfg.MaxBody)}
		}
		return answer{code: http.StatusBadRequest, msg: "could not read the body: " + err.Error()}
	}
	v := webhook.Verifier{Keys: rc.cfg.Keys[name], Tolerance: rc.cfg.Tolerance, Now: rc.now}
	deliveryID, err := v.Verify(r.Header, body)
	if err != nil {
		rc.m.signatureFailures.WithLabelValues(name).Inc()
		return answer{code: http.StatusUnauthorized, msg: err.Error()}
	}
	if rc.seen.Has(name + "\x00" + deliveryID) {
		rc.m.duplicates.WithLabelValues(name).Inc()
		return answer{code: http.StatusOK, body: delivered{Status: "duplicate", WebhookID: deliveryID}}
	}
	accepted := rc.now()
	changes, err := adapter.Split(body)
	if err != nil {
		return rc.deadLetter(r.Context(), name, deliveryID, body, err, accepted)
	}
	msgs := make([]kafka.Message, len(changes))
	ids := make([]string, len(changes))
	for i, c := range changes {
		raw := envelope.Raw{
			EventID:    envelope.EventID(name, deliveryID, i),
			Provider:   name,
			Source:     envelope.SourceWebhook,
			ReceivedAt: accepted.UTC(),
			DeliveryID: deliveryID,
			Payload:    c.Payload,
		}
		if msgs[i], err = raw.Message(c.ReviewID, accepted); err != nil {
			return answer{code: http.StatusInternalServerError, msg: err.Error()}
		}
		ids[i] = raw.EventID
	}
	if err := rc.write(r.Context(), rc.raw, msgs); err != nil {
		rc.log.Warn("kafka did not acknowledge the delivery", zap.String("provider", name),
			zap.String("webhook_id", deliveryID), zap.Int("events", len(msgs)), zap.Error(err))
		return answer{code: http.StatusServiceUnavailable, retryAfter: 5,
			msg: "could not store the delivery in Kafka in time; retry later"}
	}
	rc.seen.Add(name + "\x00" + deliveryID)
	rc.m.events.WithLabelValues(name).Add(float64(len(msgs)))
	return answer{code: http.StatusOK, body: delivered{Status: "accepted", WebhookID: deliveryID, Events: len(msgs), EventIDs: ids}}
}

// deadLetter keeps a signed but unusable body on reviews.dlq.v1 and answers
// 400; if even that write fails it answers 503, so the provider retries and
// nothing is lost.
func (rc *Receiver) deadLetter(ctx context.Context, name, deliveryID string, body []byte, cause error, now time.Time) answer {
	reason := string(provider.ReasonOf(cause))
	if reason == "" {
		reason = string(provider.ReasonUnknownShape)
	}
	dl := envelope.NewDeadLetter(envelope.StageReceiver, reason, cause, name+":webhook:"+deliveryID, body, now)
	dl.Provider = name
	dl.Headers = map[string]string{"webhook-id": deliveryID}
	msg, err := dl.Message()
	if err == nil {
		err = rc.write(ctx, rc.dlq, []kafka.Message{msg})
	}
	if err != nil {
		rc.log.Warn("dead-letter write failed", zap.String("provider", name), zap.Error(err))
		return answer{code: http.StatusServiceUnavailable, retryAfter: 5,
			msg: "could not store the refused delivery in Kafka in time; retry later"}
	}
	rc.m.deadLetters.WithLabelValues(name, reason).Inc()
	rc.seen.Add(name + "\x00" + deliveryID)
	return answer{code: http.StatusBadRequest, msg: cause.Error() + " (kept as dead letter " + dl.ID + ")"}
}

func (rc *Receiver) write(ctx context.Context, w Writer, msgs []kafka.Message) error {
	// The provider's connection may go away; the write still completes or
	// times out on its own deadline, never half-way because of the client.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rc.cfg.KafkaDeadline)
	defer cancel()
	start := time.Now()
	err := w.WriteMessages(ctx, msgs...)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	rc.m.kafkaWrite.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return err
}
