// Package app is the read API: reviews of a movie, one review, refresh
// requests, live updates over server-sent events, the operator view and the
// web page. Every read comes from PostgreSQL (package store); no request
// ever calls a provider.
package app

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/api/internal/cache"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

// Config configures the API. Zero values take the defaults noted.
type Config struct {
	// Providers are the providers every answer reports on, whether or
	// not the poller has written their health yet (default: every
	// registered provider, pkg/provider).
	Providers []string
	// Objective is the default freshness objective (60s): a provider
	// whose last successful sync is older makes answers stale.
	Objective time.Duration
	// Objectives overrides Objective per provider.
	Objectives map[string]time.Duration
	// CollapseWindow: refresh requests for one movie within it share one
	// request (30s).
	CollapseWindow time.Duration
	// RefreshRate and RefreshBurst size each client's token bucket for
	// refresh requests (0.2 per second, burst 5). A client is its address
	// (clientKey: an IPv6 client is its /64).
	RefreshRate  float64
	RefreshBurst int
	// RefreshGlobalRate and RefreshGlobalBurst size one token bucket that
	// new refresh requests of all clients share (50 per second, burst the
	// rate rounded up): it bounds what the api queues on
	// reviews.sync-requests.v1 (and what waits on Kafka). Past it: 503.
	RefreshGlobalRate  float64
	RefreshGlobalBurst int
	// RefreshTimeout bounds the wait for Kafka to take a refresh request
	// (5s); past it the answer is 503.
	RefreshTimeout time.Duration
	// TrustedProxies are the proxies (CIDRs or addresses) whose
	// X-Forwarded-For names the client, for the per-client limits of
	// refresh and event streams; empty (the default) trusts none and keys
	// on the connection's peer.
	TrustedProxies []string
	trusted        []netip.Prefix
	// SSEMaxPerClient and SSEMax cap open event streams per client (20)
	// and in all (10,000): past them 429 and 503, with Retry-After.
	SSEMaxPerClient int
	SSEMax          int
	// SSEWriteTimeout is how long one write to a stream may wait for the
	// reader (10s); a reader that reads nothing for that long is closed.
	SSEWriteTimeout time.Duration
	// OpsToken, when not empty, is required on /v1/ops/* as
	// "Authorization: Bearer <OpsToken>". Without it, the operator view
	// is public and leaves out error text (provider and Kafka errors).
	OpsToken string
	// MaxAge is the Cache-Control max-age of store reads (2s).
	MaxAge time.Duration
	// Heartbeat is the interval of SSE comments that keep idle streams
	// open through proxies (15s).
	Heartbeat time.Duration
	// HealthTTL is how long the provider_health rows read for one answer
	// serve the next ones (0: read them for every answer). The poller
	// writes them once per sync, so a second saves a query per read
	// without making a stale notice noticeably late.
	HealthTTL time.Duration
	// CacheBytes bounds the in-process cache of encoded answers (movies'
	// first pages, single reviews): 64 MiB when zero, none when negative.
	CacheBytes int64
	// CacheRefresh: a movie page that readers were served from the cache
	// is read again in the background as soon as a change drops it, so
	// the next readers hit (API_CACHE_REFRESH, true in main; off when
	// zero, as in tests that count misses).
	CacheRefresh bool
	// Brokers and Names locate the topics of the operator view.
	Brokers []string
	Names   kafkax.Names
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if len(c.Providers) == 0 {
		c.Providers = provider.Default().Names()
	}
	if c.Objective == 0 {
		c.Objective = 60 * time.Second
	}
	if c.CollapseWindow == 0 {
		c.CollapseWindow = 30 * time.Second
	}
	if c.RefreshRate == 0 {
		c.RefreshRate = 0.2
	}
	if c.RefreshBurst == 0 {
		c.RefreshBurst = 5
	}
	if c.MaxAge == 0 {
		c.MaxAge = 2 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.RefreshGlobalRate == 0 {
		c.RefreshGlobalRate = 50
	}
	if c.RefreshGlobalBurst == 0 {
		c.RefreshGlobalBurst = max(1, int(math.Ceil(c.RefreshGlobalRate)))
	}
	if c.RefreshTimeout == 0 {
		c.RefreshTimeout = 5 * time.Second
	}
	if c.SSEMaxPerClient == 0 {
		c.SSEMaxPerClient = 20
	}
	if c.SSEMax == 0 {
		c.SSEMax = 10000
	}
	if c.SSEWriteTimeout == 0 {
		c.SSEWriteTimeout = 10 * time.Second
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	trusted, err := parseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	c.trusted = trusted
	switch {
	case c.Objective < time.Second:
		return fmt.Errorf("FRESHNESS_OBJECTIVE must be at least 1s, got %s", c.Objective)
	case c.CollapseWindow < 0:
		return fmt.Errorf("REFRESH_COLLAPSE_WINDOW must not be negative, got %s", c.CollapseWindow)
	case c.RefreshRate < 0 || c.RefreshBurst < 1:
		return fmt.Errorf("REFRESH_RATE must be positive and REFRESH_BURST at least 1, got %v and %d", c.RefreshRate, c.RefreshBurst)
	case c.RefreshGlobalRate < 0 || c.RefreshGlobalBurst < 1:
		return fmt.Errorf("REFRESH_GLOBAL_RATE must be positive and REFRESH_GLOBAL_BURST at least 1, got %v and %d", c.RefreshGlobalRate, c.RefreshGlobalBurst)
	case c.RefreshTimeout < 0:
		return fmt.Errorf("REFRESH_TIMEOUT must be positive, got %s", c.RefreshTimeout)
	case c.SSEMaxPerClient < 1 || c.SSEMax < 1:
		return fmt.Errorf("SSE_MAX_PER_CLIENT and SSE_MAX must be at least 1, got %d and %d", c.SSEMaxPerClient, c.SSEMax)
	case c.SSEWriteTimeout < 0:
		return fmt.Errorf("SSE_WRITE_TIMEOUT must be positive, got %s", c.SSEWriteTimeout)
	case c.MaxAge < 0:
		return fmt.Errorf("CACHE_MAX_AGE must not be negative, got %s", c.MaxAge)
	}
	for name, d := range c.Objectives {
		if d < time.Second {
			return fmt.Errorf("FRESHNESS_OBJECTIVE_%s must be at least 1s, got %s", strings.ToUpper(name), d)
		}
	}
	return nil
}

func (c *Config) objective(provider string) time.Duration {
	if d, ok := c.Objectives[provider]; ok {
		return d
	}
	return c.Objective
}

// Writer is a synchronous acks=all Kafka writer (kafkax.NewWriter).
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// API serves the read API. Safe for concurrent use.
type API struct {
	cfg     Config
	store   *store.Store
	sync    Writer
	log     *zap.Logger
	m       metrics
	mux     *http.ServeMux
	hub     *hub
	streams *streamLimiter
	limiter *clientLimiter
	global  *rate.Limiter
	flights flights
	kafka   *kafkaOffsets
	health  healthCache
	parts   healthParts
	cache   *cache.Cache[*answer]
	// reloads queues the pages to read again (CacheRefresh).
	reloads reloads
	dead    deadLetters
	now     func() time.Time
	// afterRead, when set (by tests), runs after a cacheable answer was
	// read from the store and before it is stored in the cache.
	afterRead func(key string)
	// beforePublish, when set (by tests), runs before the events of a
	// change notice are published.
	beforePublish func(movie string)
	// reviewCC is the Cache-Control of single reviews, listCC of fresh
	// review lists far from turning stale.
	reviewCC, listCC string
}

// healthCache keeps the provider_health rows for Config.HealthTTL. Safe for
// concurrent use; at most one background read of the table is in flight.
//
// Past the TTL the rows are read again in the background while answers go
// on with the ones held, up to twice the TTL: every read of the api, a
// cache hit too, asks for these rows, and when the table's read waited
// for a CPU on a saturated machine, the readers that came meanwhile all
// waited behind it (read p99 during ingest at 100 to 250 ms inside the
// handler, make bench hotreads). Past twice the TTL (PostgreSQL down or
// that slow) an answer reads them itself, and fails with the read.
type healthCache struct {
	mu   sync.Mutex
	at   time.Time // of the rows held
	rows map[string]store.ProviderHealth
	// ver moves with every read of the table.
	ver uint64
	// refreshing is set while a background read is out; tried is when the
	// latest began, so a failing table is tried again at most four times
	// per TTL, not once per answer.
	refreshing bool
	tried      time.Time
}

func (c *healthCache) get(ctx context.Context, ttl time.Duration, read func(context.Context) (map[string]store.ProviderHealth, error)) (map[string]store.ProviderHealth, error) {
	rows, _, err := c.getVersioned(ctx, ttl, read)
	return rows, err
}

// getVersioned is get with the version of the rows returned: the same
// version, the same rows.
func (c *healthCache) getVersioned(ctx context.Context, ttl time.Duration, read func(context.Context) (map[string]store.ProviderHealth, error)) (map[string]store.ProviderHealth, uint64, error) {
	if ttl <= 0 {
		rows, err := read(ctx)
		if err != nil {
			return nil, 0, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ver++
		return rows, c.ver, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.rows != nil && now.Sub(c.at) < 2*ttl {
		if now.Sub(c.at) >= ttl && !c.refreshing && now.Sub(c.tried) >= ttl/4 {
			c.refreshing, c.tried = true, now
			go c.refresh(ttl, read)
		}
		return c.rows, c.ver, nil
	}
	rows, err := read(ctx)
	if err != nil {
		return nil, 0, err
	}
	c.rows, c.at = rows, time.Now()
	c.ver++
	return rows, c.ver, nil
}

// refresh reads the rows in the background, within a TTL (at least a
// second), and keeps them when the read succeeds.
func (c *healthCache) refresh(ttl time.Duration, read func(context.Context) (map[string]store.ProviderHealth, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), max(ttl, time.Second))
	defer cancel()
	rows, err := read(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshing = false
	if err == nil {
		c.rows, c.at = rows, time.Now()
		c.ver++
	}
}

// New returns the API over st, queuing refresh requests with sync.
func New(cfg Config, st *store.Store, sync Writer, log *zap.Logger, reg prometheus.Registerer) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &API{cfg: cfg, store: st, sync: sync, log: log, m: newMetrics(reg), mux: http.NewServeMux(), now: time.Now}
	a.hub = newHub()
	a.streams = &streamLimiter{perClient: cfg.SSEMaxPerClient, max: cfg.SSEMax}
	a.limiter = newClientLimiter(cfg.RefreshRate, cfg.RefreshBurst)
	a.global = rate.NewLimiter(rate.Limit(cfg.RefreshGlobalRate), cfg.RefreshGlobalBurst)
	a.kafka = &kafkaOffsets{brokers: cfg.Brokers, ttl: 2 * time.Second}
	a.cache = cache.New[*answer](max(0, cfg.CacheBytes))
	a.m.registerCache(reg, a.cache)
	a.reviewCC = publicCache(cfg.MaxAge)
	a.listCC = a.reviewCC
	for _, rt := range a.routes() {
		a.mux.HandleFunc(rt.pattern, rt.handler)
	}
	return a, nil
}

type route struct {
	pattern string
	handler http.HandlerFunc
}

func (a *API) routes() []route {
	return []route{
		{"GET /v1/movies/{movie_id}/reviews", a.movieReviews},
		{"GET /v1/reviews/{id}", a.review},
		{"POST /v1/movies/{movie_id}/refresh", a.refresh},
		{"GET /v1/movies/{movie_id}/events", a.events},
		{"GET /v1/movies", a.movies},
		{"GET /v1/ops/providers", a.ops},
		{"GET /{$}", a.page},
	}
}

// Patterns lists the method and path of every route, as ServeMux patterns.
func (a *API) Patterns() []string {
	var out []string
	for _, rt := range a.routes() {
		out = append(out, rt.pattern)
	}
	return out
}

// Handler serves the routes, measuring each by its pattern, answering
// unknown paths and methods with JSON errors, and requiring the operator
// token (Config.OpsToken) on every path under /v1/ops/, known or not.
func (a *API) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &obs.StatusRecorder{ResponseWriter: w}
		h, pattern := a.mux.Handler(r)
		var serve http.Handler = a.mux
		if pattern == "" {
			pattern = "unmatched"
			serve = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(&jsonFallback{w}, r) })
		}
		if strings.HasPrefix(r.URL.Path, "/v1/ops/") {
			serve = obs.RequireToken(a.cfg.OpsToken, serve)
		}
		serve.ServeHTTP(rec, r)
		if pattern == "GET /v1/movies/{movie_id}/events" && rec.Status == http.StatusOK {
			return // a stream's duration is its subscription, not a latency
		}
		a.m.latency.WithLabelValues(pattern, strconv.Itoa(rec.Status)).Observe(time.Since(start).Seconds())
	})
}

// RunListener feeds live updates from the sink's notifications until ctx
// ends. databaseURL is used for one dedicated connection.
func (a *API) RunListener(ctx context.Context, databaseURL string) error {
	l := &store.Listener{URL: databaseURL, Log: a.log,
		OnConnect: func(first bool) {
			// Changes committed while the listener was away (or before
			// it first listened) were not announced: start the cache
			// empty, and refuse fills of reads begun before now.
			a.cache.SetBypass(false)
			a.hub.setConnected(true)
			if !first {
				// Changes committed while we were away were not
				// announced: every subscriber reloads.
				a.hub.broadcastResync("live updates reconnected")
			}
		},
		OnDisconnect: func(error) {
			// Notifications may be missed from now on: serve from the
			// store until the listener is back.
			a.cache.SetBypass(true)
			a.hub.setConnected(false)
		},
		OnNotify: func(payload string) { a.onNotify(ctx, payload) },
	}
	return l.Run(ctx)
}

// CloseStreams ends every event stream and refuses new ones, so that a
// server shutdown does not wait for streams that never end by themselves.
func (a *API) CloseStreams(context.Context) error {
	a.hub.close()
	return nil
}

// LiveUpdatesReady reports whether the change listener is connected.
func (a *API) LiveUpdatesReady(context.Context) error {
	if !a.hub.isConnected() {
		return fmt.Errorf("live-update listener is not connected to PostgreSQL")
	}
	return nil
}

func movieParam(r *http.Request) (string, error) {
	id := r.PathValue("movie_id")
	if !review.ValidMovieID(id) {
		return "", badRequest(fmt.Sprintf("movie id %q is malformed: want an IMDb id, tt followed by 7 to 10 digits", id))
	}
	return id, nil
}

// query parses the query string, refusing a malformed one (which
// r.URL.Query would silently drop).
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("query string is malformed: " + err.Error())
	}
	return q, nil
}

// limitParam reads ?limit= (default def, 1 to max).
func limitParam(r *http.Request, def, maxLimit int) (int, error) {
	q, err := query(r)
	if err != nil {
		return 0, err
	}
	return limitOf(q, def, maxLimit)
}

func limitOf(q url.Values, def, maxLimit int) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, badRequest(fmt.Sprintf("limit %q is malformed: want an integer from 1 to %d", s, maxLimit))
	}
	return n, nil
}

// ReviewList is the answer of GET /v1/movies/{movie_id}/reviews.
type ReviewList struct {
	MovieID     string           `json:"movie_id"`
	Reviews     []review.Review  `json:"reviews"`
	NextCursor  *string          `json:"next_cursor"`
	LastUpdated *time.Time       `json:"last_updated"`
	Stale       bool             `json:"stale"`
	Providers   []ProviderStatus `json:"providers"`
}

func (a *API) providersAt(ctx context.Context, now time.Time) ([]providerView, error) {
	rows, err := a.health.get(ctx, a.cfg.HealthTTL, a.store.ProviderHealth)
	if err != nil {
		return nil, err
	}
	return providerViews(&a.cfg, rows, now), nil
}

// MovieList is the answer of GET /v1/movies: the movies whose reviews
// changed last, for the web page's chooser.
type MovieList struct {
	Movies []store.Movie `json:"movies"`
}

func (a *API) movies(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r, 20, 100)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ms, err := a.store.RecentMovies(r.Context(), limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeJSON(w, r, MovieList{Movies: ms}, publicCache(a.cfg.MaxAge))
}
