// Package app is the provider simulator's HTTP face: each provider's
// polling API (docs/providers.md) behind auth, a token bucket and injectable
// faults; the control API of docs/contract.md §6; and the trickle of generated
// changes. Handlers are safe for concurrent use.
package app

import (
	"context"
	"crypto/subtle"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/catalog"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/generator"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/ratelimit"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/webhooks"
)

// Config is the simulator's configuration below main.
type Config struct {
	// APIKey is the bearer key the polling APIs accept.
	APIKey string
	// RateLimits are the published limits per provider (the provider's
	// registered RateLimit for a provider missing here).
	RateLimits map[string]float64
	// Seed seeds the trickle's generator.
	Seed uint64
	// TricklePerS is generated changes per second; 0 turns the trickle off.
	TricklePerS float64
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.APIKey == "" {
		return fmt.Errorf("PROVIDER_API_KEY must not be empty")
	}
	for p, r := range c.RateLimits {
		if !(r > 0) {
			return fmt.Errorf("rate limit of %s must be > 0 requests per second, got %v", p, r)
		}
	}
	if c.TricklePerS < 0 || c.TricklePerS > 1000 {
		return fmt.Errorf("SIMULATOR_TRICKLE_PER_S must be 0 to 1000, got %v", c.TricklePerS)
	}
	return nil
}

// Faults make a provider's polling API misbehave (docs/contract.md §6). The zero
// value is the published behaviour.
type Faults struct {
	ErrorRate     float64 `json:"error_rate"`
	LatencyMs     int     `json:"latency_ms"`
	RateLimitPerS float64 `json:"rate_limit_per_s"`
	Down          bool    `json:"down"`
}

// sim is one simulated provider.
type sim struct {
	name      string
	cat       *catalog.Catalog
	bucket    *ratelimit.Bucket
	published float64
	stats     *apiStats
	// epoch names this process's feed in reelpulse tokens.
	epoch string

	mu     sync.Mutex
	faults Faults
}

func (s *sim) getFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// App is the simulator.
type App struct {
	cfg    Config
	log    *zap.Logger
	sender *webhooks.Sender
	sims   map[string]*sim
	names  []string

	requests *prometheus.CounterVec
	changes  *prometheus.CounterVec
}

// New builds the simulator with empty catalogues. sender delivers its
// webhooks; reg gets its metrics.
func New(cfg Config, sender *webhooks.Sender, log *zap.Logger, reg prometheus.Registerer) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &App{
		cfg: cfg, log: log, sender: sender, sims: map[string]*sim{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simulator_api_requests_total",
			Help: "Requests to the simulated providers' polling APIs, by provider and status code.",
		}, []string{"provider", "code"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simulator_changes_total",
			Help: "Changes recorded in the providers' catalogues, by provider, op and origin (control, trickle).",
		}, []string{"provider", "op", "origin"}),
	}
	reg.MustRegister(a.requests, a.changes)
	for _, r := range provider.Registered() {
		name := r.Name()
		if err := simulated(name); err != nil {
			return nil, err
		}
		cat, err := catalog.New(r.Adapter, cfg.Now)
		if err != nil {
			return nil, err
		}
		limit := cfg.RateLimits[name]
		if limit == 0 {
			limit = r.RateLimit
		}
		a.sims[name] = &sim{name: name, cat: cat, bucket: ratelimit.New(limit, cfg.Now), published: limit, stats: newAPIStats(cfg.Now), epoch: newEpoch()}
		a.names = append(a.names, name)
	}
	return a, nil
}

// simulated checks that every part of a provider's simulator shape
// exists (docs/providers.md, "Adding a provider"), so a provider registered
// without one stops the simulator at start rather than at its first request.
func simulated(name string) error {
	var missing []string
	if !catalog.Simulates(name) {
		missing = append(missing, "its events (catalog natives)")
	}
	if !generator.Styled(name) {
		missing = append(missing, "its ids and URLs (generator styles)")
	}
	if _, ok := webhookBodies[name]; !ok {
		missing = append(missing, "its webhook body (app webhookBodies)")
	}
	if _, ok := pollingAPIs[name]; !ok {
		missing = append(missing, "its polling API (app pollingAPIs)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("provider %q is registered but the simulator lacks %s", name, strings.Join(missing, ", "))
	}
	return nil
}

// Catalog returns a provider's catalogue (for tests and the trickle).
func (a *App) Catalog(name string) *catalog.Catalog {
	if s, ok := a.sims[name]; ok {
		return s.cat
	}
	return nil
}

// Routes adds the polling APIs and the control API to mux.
func (a *App) Routes(mux *http.ServeMux) {
	a.providerRoutes(mux)
	a.controlRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		obs.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path+" (see docs/providers.md)")
	})
}

// guard wraps a polling API handler: counting, faults (down, latency),
// the token bucket, auth, injected errors, in that order.
func (a *App) guard(s *sim, h http.HandlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		w := &obs.StatusRecorder{ResponseWriter: rw}
		defer func() { a.requests.WithLabelValues(s.name, strconv.Itoa(w.Status)).Inc() }()
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			obs.WriteError(w, http.StatusMethodNotAllowed, "only GET is allowed here")
			return
		}
		s.stats.request()
		f := s.getFaults()
		if f.Down {
			s.stats.count(func(c *apiCounters) { c.Unavailable++ })
			w.Header().Set("Retry-After", "5")
			obs.WriteError(w, http.StatusServiceUnavailable, s.name+" is down (simulated outage)")
			return
		}
		if f.LatencyMs > 0 {
			t := time.NewTimer(time.Duration(f.LatencyMs) * time.Millisecond)
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		d := s.bucket.Take()
		h0 := w.Header()
		h0.Set("X-RateLimit-Limit", strconv.FormatFloat(d.Limit, 'f', -1, 64))
		h0.Set("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
		h0.Set("X-RateLimit-Reset", strconv.FormatInt(ceilSeconds(d.Reset), 10))
		if !d.OK {
			s.stats.rateLimited()
			h0.Set("Retry-After", strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter)), 10))
			obs.WriteError(w, http.StatusTooManyRequests,
				fmt.Sprintf("rate limit of %s requests per second exceeded", strconv.FormatFloat(d.Limit, 'f', -1, 64)))
			return
		}
		if !a.authorized(r) {
			s.stats.count(func(c *apiCounters) { c.Unauthorized++ })
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+s.name+`"`)
			obs.WriteError(w, http.StatusUnauthorized, "missing or wrong API key: send Authorization: Bearer <key>")
			return
		}
		if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
			s.stats.count(func(c *apiCounters) { c.ErrorsInjected++ })
			obs.WriteError(w, http.StatusInternalServerError, "internal error (simulated)")
			return
		}
		h(w, r)
	}
}

func (a *App) authorized(r *http.Request) bool {
	want := "Bearer " + a.cfg.APIKey
	got := r.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func newEpoch() string {
	return strconv.FormatUint(rand.Uint64()>>24, 36)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Trickle records generated changes at cfg.TricklePerS until ctx ends.
func (a *App) Trickle(ctx context.Context) error {
	if a.cfg.TricklePerS <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	gen := generator.New(a.cfg.Seed)
	t := time.NewTicker(time.Duration(float64(time.Second) / a.cfg.TricklePerS))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		st := gen.Next()
		webhook := st.Webhook && a.sender.HasKey(st.Provider)
		if _, _, err := a.apply(st.Provider, st.Change, webhook, "trickle"); err != nil {
			a.log.Warn("generated change refused", zap.String("provider", st.Provider),
				zap.String("review_id", st.Change.Data.ReviewID), zap.Error(err))
		}
	}
}

// apply records a change and, with webhook, queues its delivery. It
// returns the entry and the webhook-id ("" without webhook).
func (a *App) apply(name string, ch catalog.Change, webhook bool, origin string) (catalog.Entry, string, error) {
	s := a.sims[name]
	e, err := s.cat.Apply(ch)
	if err != nil {
		return e, "", err
	}
	a.changes.WithLabelValues(name, string(ch.Op), origin).Inc()
	if !webhook {
		return e, "", nil
	}
	id := webhooks.NewID()
	body, err := deliveryBody(name, id, e, a.cfg.Now())
	if err == nil {
		err = a.sender.Enqueue(name, id, body)
	}
	if err != nil {
		return e, "", fmt.Errorf("the change is recorded (poll-only), but its webhook is not queued: %w", err)
	}
	return e, id, nil
}
