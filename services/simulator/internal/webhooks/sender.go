// Package webhooks delivers a simulated provider's signed webhooks
// (Standard Webhooks) to the receiver: a queue ordered by due time, a few
// workers, and retries with exponential backoff and full jitter on any
// non-2xx answer or network error until a give-up deadline.
package webhooks

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/retry"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// Config tunes delivery.
type Config struct {
	// ReceiverURL is the base URL; deliveries go to {ReceiverURL}/webhooks/{provider}.
	ReceiverURL string
	// Keys are each provider's signing key (the first of its secrets).
	Keys map[string][]byte
	// Workers send at once (default 4).
	Workers int
	// Base and Cap bound the backoff (defaults 500ms and 60s).
	Base, Cap time.Duration
	// GiveUp is how long after its first attempt a delivery is retried
	// (default 10m).
	GiveUp time.Duration
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// MaxQueued bounds waiting deliveries (default 100000); Enqueue fails
	// past it.
	MaxQueued int
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Base <= 0 {
		c.Base = 500 * time.Millisecond
	}
	if c.Cap <= 0 {
		c.Cap = 60 * time.Second
	}
	if c.GiveUp <= 0 {
		c.GiveUp = 10 * time.Minute
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 100000
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.ReceiverURL, "http://") && !strings.HasPrefix(c.ReceiverURL, "https://") {
		return fmt.Errorf("RECEIVER_URL %q is not an http(s) URL", c.ReceiverURL)
	}
	return nil
}

// Stats counts one provider's deliveries.
type Stats struct {
	Queued   int   `json:"queued"`
	Sent     int64 `json:"sent"`
	Acked    int64 `json:"acked"`
	Failed   int64 `json:"failed"`
	Attempts int64 `json:"attempts"`
}

// ErrQueueFull is returned by Enqueue when MaxQueued deliveries wait.
var ErrQueueFull = errors.New("webhook queue is full")

// ErrNoKey is returned by Enqueue for a provider without a signing key.
var ErrNoKey = errors.New("no webhook secret is configured for this provider")

// Sender queues and delivers webhooks. Enqueue is safe for concurrent use;
// Run delivers until its context ends (deliveries still waiting then are
// dropped and logged).
type Sender struct {
	cfg    Config
	client *http.Client
	log    *zap.Logger

	mu    sync.Mutex
	queue dueHeap
	stats map[string]*Stats
	wake  chan struct{}

	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
}

// New returns a sender; reg gets its metrics.
func New(cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Sender, error) {
	cfg.defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sender{
		cfg: cfg,
		log: log,
		client: &http.Client{
			Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse // a redirect is an answer, not a success
			},
		},
		stats: map[string]*Stats{},
		wake:  make(chan struct{}, 1),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simulator_webhook_attempts_total",
			Help: "HTTP attempts of webhook deliveries, by provider and outcome (2xx, non_2xx, network_error).",
		}, []string{"provider", "outcome"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simulator_webhook_deliveries_total",
			Help: "Webhook deliveries by provider and final outcome (acked, failed, dropped).",
		}, []string{"provider", "outcome"}),
	}
	reg.MustRegister(s.attempts, s.deliveries, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "simulator_webhook_queue_depth",
		Help: "Webhook deliveries waiting for their next attempt.",
	}, func() float64 { s.mu.Lock(); defer s.mu.Unlock(); return float64(len(s.queue)) }))
	return s, nil
}

// HasKey reports whether provider can sign webhooks.
func (s *Sender) HasKey(provider string) bool { return len(s.cfg.Keys[provider]) > 0 }

// NewID returns a fresh webhook-id ("msg_" + 16 hex digits).
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "msg_" + hex.EncodeToString(b)
}

// Enqueue queues body for provider under webhook-id id, due at once. It
// never blocks on the network. Errors: ErrNoKey, ErrQueueFull.
func (s *Sender) Enqueue(provider, id string, body []byte) error {
	if !s.HasKey(provider) {
		return ErrNoKey
	}
	s.mu.Lock()
	if len(s.queue) >= s.cfg.MaxQueued {
		s.mu.Unlock()
		return ErrQueueFull
	}
	heap.Push(&s.queue, &delivery{provider: provider, id: id, body: body, due: time.Now()})
	s.statsOf(provider).Queued++
	s.mu.Unlock()
	s.signal()
	return nil
}

// Stats returns a copy of every provider's counters.
func (s *Sender) Stats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stats, len(s.stats))
	for k, v := range s.stats {
		out[k] = *v
	}
	return out
}

func (s *Sender) statsOf(provider string) *Stats {
	st := s.stats[provider]
	if st == nil {
		st = &Stats{}
		s.stats[provider] = st
	}
	return st
}

func (s *Sender) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run starts the workers and blocks until ctx ends and they have stopped.
func (s *Sender) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	left := len(s.queue)
	for _, d := range s.queue {
		s.deliveries.WithLabelValues(d.provider, "dropped").Inc()
	}
	s.mu.Unlock()
	if left > 0 {
		s.log.Warn("webhook deliveries dropped at shutdown", zap.Int("count", left))
	}
	return ctx.Err()
}

func (s *Sender) work(ctx context.Context) {
	for {
		d, wait := s.next()
		if d == nil {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-s.wake:
				t.Stop()
			case <-t.C:
			}
			continue
		}
		s.signal() // another worker may take the next due delivery
		s.attempt(ctx, d)
		if ctx.Err() != nil {
			return
		}
	}
}

// next pops a due delivery, or says how long to wait for one.
func (s *Sender) next() (*delivery, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, time.Minute
	}
	if wait := time.Until(s.queue[0].due); wait > 0 {
		return nil, wait
	}
	d := heap.Pop(&s.queue).(*delivery)
	return d, 0
}

func (s *Sender) attempt(ctx context.Context, d *delivery) {
	now := time.Now()
	if d.attempts == 0 {
		d.first = now
	}
	d.attempts++
	outcome, err := s.post(ctx, d, now)
	s.attempts.WithLabelValues(d.provider, outcome).Inc()

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.statsOf(d.provider)
	st.Attempts++
	if d.attempts == 1 {
		st.Sent++
	}
	if err == nil {
		st.Queued--
		st.Acked++
		s.deliveries.WithLabelValues(d.provider, "acked").Inc()
		return
	}
	delay := retry.Backoff(d.attempts-1, s.cfg.Base, s.cfg.Cap)
	if time.Since(d.first)+delay > s.cfg.GiveUp {
		st.Queued--
		st.Failed++
		s.deliveries.WithLabelValues(d.provider, "failed").Inc()
		s.log.Warn("webhook delivery given up", zap.String("provider", d.provider),
			zap.String("webhook_id", d.id), zap.Int("attempts", d.attempts), zap.Error(err))
		return
	}
	s.log.Debug("webhook attempt failed; retrying", zap.String("provider", d.provider),
		zap.String("webhook_id", d.id), zap.Int("attempt", d.attempts), zap.Duration("in", delay), zap.Error(err))
	d.due = time.Now().Add(delay)
	heap.Push(&s.queue, d)
}

// post makes one attempt, signed afresh (a retry after minutes must still
// be within the receiver's timestamp tolerance).
func (s *Sender) post(ctx context.Context, d *delivery, now time.Time) (string, error) {
	url := strings.TrimRight(s.cfg.ReceiverURL, "/") + "/webhooks/" + d.provider
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(d.body))
	if err != nil {
		return "network_error", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "reviewpipe-simulator/"+d.provider)
	webhook.SetHeaders(req.Header, s.cfg.Keys[d.provider], d.id, now, d.body)
	res, err := s.client.Do(req)
	if err != nil {
		return "network_error", err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return "non_2xx", fmt.Errorf("receiver answered %d: %s", res.StatusCode, bytes.TrimSpace(msg))
	}
	return "2xx", nil
}

type delivery struct {
	provider, id string
	body         []byte
	due, first   time.Time
	attempts     int
}

type dueHeap []*delivery

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(*delivery)) }
func (h *dueHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return d
}
