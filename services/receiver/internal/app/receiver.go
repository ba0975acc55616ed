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
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// Config configures the receiver.
type Config struct {
	// Keys holds each provider's webhook keys (several during rotation).
	Keys map[string][][]byte
	// MaxBody is the largest accepted body in bytes (default 1 MiB, at
	// most kafkax.MaxBodyLimit).
	MaxBody int64
	// BodyTimeout bounds reading a delivery's body, from the end of its
	// headers (default 10s); past it the receiver answers 408 and closes
	// the connection.
	BodyTimeout time.Duration
	// MaxInFlight bounds verified deliveries waiting on Kafka at once
	// (default 256); past it the receiver answers 429.
	MaxInFlight int
	// MaxPendingBytes bounds the bytes of records handed to Kafka that
	// kafka-go is not done with yet, including those of deliveries already
	// answered 503 (default 64 MiB, at least twice MaxBody); past it the
	// receiver answers 503 at once.
	MaxPendingBytes int64
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
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = 64 << 20
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
	case c.MaxBody < 1024 || c.MaxBody > kafkax.MaxBodyLimit:
		return fmt.Errorf("WEBHOOK_MAX_BODY must be between 1024 and %d bytes, got %d", kafkax.MaxBodyLimit, c.MaxBody)
	case c.BodyTimeout < 0:
		return fmt.Errorf("WEBHOOK_BODY_TIMEOUT must be positive, got %s", c.BodyTimeout)
	case c.MaxInFlight < 1:
		return fmt.Errorf("RECEIVER_MAX_IN_FLIGHT must be at least 1, got %d", c.MaxInFlight)
	case c.MaxPendingBytes < 2*c.MaxBody:
		return fmt.Errorf("RECEIVER_MAX_PENDING_BYTES must be at least twice WEBHOOK_MAX_BODY (%d), got %d", 2*c.MaxBody, c.MaxPendingBytes)
	case c.KafkaDeadline < 0:
		return fmt.Errorf("RECEIVER_KAFKA_DEADLINE must be positive, got %s", c.KafkaDeadline)
	}
	return nil
}

// Writer is what the receiver needs of a Kafka writer: a synchronous,
// acks=all WriteMessages (see kafkax.NewWriter) that, called with a context
// that never ends, returns only once it is done with the messages, as a
// synchronous kafka.Writer does (see pendingBytes.write).
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
	reading  atomic.Int64 // bodies being read
	pending  *pendingBytes
	ids      *webhookIDs
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
		pending:  &pendingBytes{max: cfg.MaxPendingBytes},
		ids:      newWebhookIDs(cfg.DedupeSize),
		now:      time.Now,
		m:        newMetrics(reg),
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "reviewpipe_webhook_in_flight",
		Help: "Verified deliveries waiting on Kafka now; at RECEIVER_MAX_IN_FLIGHT more are answered 429.",
	}, func() float64 { return float64(len(r.inflight)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reviewpipe_webhook_reading_bodies",
			Help: "Requests whose body is being read now (not verified yet; they hold no in-flight slot); each ends within WEBHOOK_BODY_TIMEOUT.",
		}, func() float64 { return float64(r.reading.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reviewpipe_receiver_kafka_pending_bytes",
			Help: "Bytes of records handed to Kafka that kafka-go is not done with yet (answered or not); past RECEIVER_MAX_PENDING_BYTES deliveries are answered 503.",
		}, func() float64 { return float64(r.pending.bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reviewpipe_receiver_kafka_pending_bytes_limit",
			Help: "RECEIVER_MAX_PENDING_BYTES.",
		}, func() float64 { return float64(cfg.MaxPendingBytes) }))
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

// refusedBody is the body of a 400 whose delivery was kept as a dead letter.
type refusedBody struct {
	Error        string `json:"error"`
	DeadLetterID string `json:"dead_letter_id"`
}

// answer is one outcome of a delivery.
type answer struct {
	code       int
	msg        string
	retryAfter int
	body       any
	// deadLetterID names the dead letter a 400 kept the body in.
	deadLetterID string
	// refusal counts the answer in reviewpipe_webhook_refusals_total.
	refusal string
	// close ends the connection after the answer: the body was not read
	// to its end.
	close bool
}

// Refusal reasons of reviewpipe_webhook_refusals_total.
const (
	refusedBodyTimeout  = "body_timeout"
	refusedBodyTooLarge = "body_too_large"
	refusedInFlight     = "in_flight"
	refusedPendingBytes = "pending_bytes"
	refusedKafka        = "kafka_unavailable"
)

// answerMargin is the time left to write an answer after the longest wait
// for the body and then for Kafka.
const answerMargin = 5 * time.Second

func (rc *Receiver) handle(w http.ResponseWriter, r *http.Request) {
	start := rc.now()
	// The body gets its own deadline from the end of the headers (the
	// server's ReadTimeout counts from their start), and the answer room
	// for the longest wait on the body and then on Kafka, whatever the
	// server's own timeouts.
	ctl := http.NewResponseController(w)
	bodyDeadline := time.Now().Add(rc.cfg.BodyTimeout)
	if err := ctl.SetReadDeadline(bodyDeadline); err != nil {
		rc.log.Warn("cannot set the body's read deadline", zap.Error(err))
	}
	_ = ctl.SetWriteDeadline(bodyDeadline.Add(rc.cfg.KafkaDeadline + answerMargin))

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
	if a.close {
		w.Header().Set("Connection", "close")
	}
	switch {
	case a.deadLetterID != "":
		obs.WriteJSON(w, a.code, refusedBody{Error: a.msg, DeadLetterID: a.deadLetterID})
	case a.code >= 400:
		obs.WriteError(w, a.code, a.msg)
	default:
		obs.WriteJSON(w, a.code, a.body)
	}
	rc.m.answers.WithLabelValues(label, strconv.Itoa(a.code)).Inc()
	if a.refusal != "" {
		rc.m.refusals.WithLabelValues(label, a.refusal).Inc()
	}
	rc.m.latency.WithLabelValues(label).Observe(time.Since(start).Seconds())
	if a.code >= 500 {
		rc.log.Warn("webhook not accepted", zap.String("provider", label), zap.Int("code", a.code), zap.String("error", a.msg))
	} else if a.code >= 400 {
		rc.log.Info("webhook refused", zap.String("provider", label), zap.Int("code", a.code), zap.String("error", a.msg))
	}
}

// deliver answers one delivery. Everything an unauthenticated client can
// make it do comes first and holds nothing that signed deliveries need:
// the content type and size checks, reading the body under its own
// deadline (memory grows with the bytes received, never with the
// Content-Length claimed) and the signature check. Only a verified
// delivery then takes an in-flight slot and bytes of the pending budget.
func (rc *Receiver) deliver(r *http.Request, name string, adapter provider.Adapter, known bool) answer {
	if !known {
		return answer{code: http.StatusNotFound, close: true, msg: fmt.Sprintf("unknown provider %q", name)}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return answer{code: http.StatusUnsupportedMediaType, close: true,
			msg: fmt.Sprintf("content type must be application/json, got %q", r.Header.Get("Content-Type"))}
	}
	if r.ContentLength > rc.cfg.MaxBody {
		return answer{code: http.StatusRequestEntityTooLarge, close: true, refusal: refusedBodyTooLarge,
			msg: fmt.Sprintf("body of %d bytes is over the limit of %d bytes", r.ContentLength, rc.cfg.MaxBody)}
	}
	body, a, ok := rc.readBody(r)
	if !ok {
		return a
	}
	v := webhook.Verifier{Keys: rc.cfg.Keys[name], Tolerance: rc.cfg.Tolerance, Now: rc.now}
	deliveryID, err := v.Verify(r.Header, body)
	if err != nil {
		rc.m.signatureFailures.WithLabelValues(name).Inc()
		return answer{code: http.StatusUnauthorized, msg: err.Error()}
	}

	// One delivery of a webhook-id at a time; a redelivery gets the
	// remembered final answer.
	key := name + "\x00" + deliveryID
	for {
		e, known, wait := rc.ids.claim(key)
		if known {
			if e.refusal != nil {
				rc.m.duplicates.WithLabelValues(name).Inc()
				return *e.refusal
			}
			rc.m.duplicates.WithLabelValues(name).Inc()
			return answer{code: http.StatusOK, body: delivered{Status: "duplicate", WebhookID: deliveryID}}
		}
		if wait == nil {
			break
		}
		<-wait // the first delivery's answer comes within its Kafka deadline
	}
	a = rc.store(r.Context(), name, deliveryID, adapter, body)
	switch {
	case a.code == http.StatusOK:
		rc.ids.done(key, true, nil)
	case a.code == http.StatusBadRequest && a.deadLetterID != "":
		rc.ids.done(key, true, &a)
	default:
		rc.ids.done(key, false, nil)
	}
	return a
}

// readBody reads r's body, at most MaxBody bytes, under the read deadline
// set by handle. ok is false when it did not arrive whole: a is then the
// answer.
func (rc *Receiver) readBody(r *http.Request) (body []byte, a answer, ok bool) {
	rc.reading.Add(1)
	defer rc.reading.Add(-1)
	// io.ReadAll grows its buffer with what arrives: a client announcing a
	// large body and sending it slowly costs only what it sent.
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, rc.cfg.MaxBody))
	if err == nil {
		return body, answer{}, true
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return nil, answer{code: http.StatusRequestEntityTooLarge, close: true, refusal: refusedBodyTooLarge,
			msg: fmt.Sprintf("body is over the limit of %d bytes", rc.cfg.MaxBody)}, false
	case errors.As(err, &netErr) && netErr.Timeout():
		sent := fmt.Sprintf("%d bytes", len(body))
		if r.ContentLength >= 0 {
			sent = fmt.Sprintf("%d of %d bytes", len(body), r.ContentLength)
		}
		return nil, answer{code: http.StatusRequestTimeout, close: true, refusal: refusedBodyTimeout,
			msg: fmt.Sprintf("the body did not arrive within %s (WEBHOOK_BODY_TIMEOUT): %s received", rc.cfg.BodyTimeout, sent)}, false
	default:
		return nil, answer{code: http.StatusBadRequest, close: true, msg: "could not read the body: " + err.Error()}, false
	}
}

// store publishes a verified delivery's events, or its dead letter when
// they cannot be read, holding an in-flight slot meanwhile.
func (rc *Receiver) store(ctx context.Context, name, deliveryID string, adapter provider.Adapter, body []byte) answer {
	select {
	case rc.inflight <- struct{}{}:
		defer func() { <-rc.inflight }()
	default:
		return answer{code: http.StatusTooManyRequests, retryAfter: 1, refusal: refusedInFlight,
			msg: fmt.Sprintf("the receiver has %d deliveries waiting on Kafka already; retry later", rc.cfg.MaxInFlight)}
	}
	accepted := rc.now()
	events, err := adapter.Split(body)
	if err != nil {
		return rc.deadLetter(ctx, name, deliveryID, body, err, accepted)
	}
	msgs, ids, err := rawMessages(name, deliveryID, events, accepted)
	if err != nil {
		return answer{code: http.StatusInternalServerError, msg: err.Error()}
	}
	if err := rc.write(ctx, rc.raw, msgs); err != nil {
		if a, full := rc.pendingFull(err); full {
			return a
		}
		rc.log.Warn("kafka did not acknowledge the delivery", zap.String("provider", name),
			zap.String("webhook_id", deliveryID), zap.Int("events", len(msgs)), zap.Error(err))
		return answer{code: http.StatusServiceUnavailable, retryAfter: 5, refusal: refusedKafka,
			msg: "could not store the delivery in Kafka in time; retry later"}
	}
	rc.m.events.WithLabelValues(name).Add(float64(len(msgs)))
	return answer{code: http.StatusOK, body: delivered{Status: "accepted", WebhookID: deliveryID, Events: len(msgs), EventIDs: ids}}
}

// rawMessages builds the reviews.raw.v1 records of a delivery's events and
// their event ids.
func rawMessages(name, deliveryID string, events []provider.RawEvent, accepted time.Time) ([]kafka.Message, []string, error) {
	msgs := make([]kafka.Message, len(events))
	ids := make([]string, len(events))
	for i, c := range events {
		raw := envelope.Raw{
			EventID:    envelope.EventID(name, deliveryID, i),
			Provider:   name,
			Source:     envelope.SourceWebhook,
			ReceivedAt: accepted.UTC(),
			DeliveryID: deliveryID,
			Payload:    c.Payload,
		}
		var err error
		if msgs[i], err = raw.Message(c.ReviewID, accepted); err != nil {
			return nil, nil, err
		}
		ids[i] = raw.EventID
	}
	return msgs, ids, nil
}

// pendingFull is the answer to a write refused by the pending budget.
func (rc *Receiver) pendingFull(err error) (answer, bool) {
	if !errors.Is(err, errPendingFull) {
		return answer{}, false
	}
	return answer{code: http.StatusServiceUnavailable, retryAfter: 5, refusal: refusedPendingBytes,
		msg: fmt.Sprintf("%s (RECEIVER_MAX_PENDING_BYTES, %d bytes); retry later", errPendingFull, rc.cfg.MaxPendingBytes)}, true
}

// deadLetter keeps a signed but unusable body on reviews.dlq.v1 and answers
// 400 naming the dead letter; if even that write fails it answers 503, so
// the provider retries and nothing is lost.
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
		if a, full := rc.pendingFull(err); full {
			return a
		}
		rc.log.Warn("dead-letter write failed", zap.String("provider", name), zap.Error(err))
		return answer{code: http.StatusServiceUnavailable, retryAfter: 5, refusal: refusedKafka,
			msg: "could not store the refused delivery in Kafka in time; retry later"}
	}
	rc.m.deadLetters.WithLabelValues(name, reason).Inc()
	return answer{code: http.StatusBadRequest, deadLetterID: dl.ID,
		msg: cause.Error() + " (kept as dead letter " + dl.ID + ")"}
}

// write hands msgs to w within the pending budget and waits for Kafka's
// acknowledgement until KafkaDeadline.
func (rc *Receiver) write(ctx context.Context, w Writer, msgs []kafka.Message) error {
	// The provider's connection may go away; the wait still ends on its
	// own deadline, never half-way because of the client.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rc.cfg.KafkaDeadline)
	defer cancel()
	start := time.Now()
	err := rc.pending.write(ctx, w, msgs)
	if errors.Is(err, errPendingFull) {
		return err
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	rc.m.kafkaWrite.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return err
}
