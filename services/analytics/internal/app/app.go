// Package app is the analytics consumer: it reads reviews.normalized.v1 as
// the group reviewpipe.analytics.movie-stats, keeps per-movie rating
// statistics in PostgreSQL with the consumed offsets in the same
// transaction, and serves them over HTTP. It is the reference for consumers
// of the normalized topic (see the module's README.md).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/store"
)

// Config configures the consumer.
type Config struct {
	Brokers []string
	Names   kafkax.Names
	// MaxBatch bounds the records of one transaction (default 500).
	MaxBatch int
}

// Validate fills defaults and checks the config.
func (c *Config) Validate() error {
	if c.MaxBatch == 0 {
		c.MaxBatch = 500
	}
	if len(c.Brokers) == 0 {
		return fmt.Errorf("analytics: no Kafka brokers configured (KAFKA_BROKERS)")
	}
	if c.MaxBatch < 1 {
		return fmt.Errorf("analytics: MaxBatch must be at least 1, got %d", c.MaxBatch)
	}
	return nil
}

// App consumes the normalized topic into the statistics. Safe for
// concurrent use.
type App struct {
	cfg   Config
	store *store.Store
	log   *zap.Logger
	m     metrics
}

// Consumer is the name of the consumer group and of the offsets kept in
// PostgreSQL, under names.
func Consumer(names kafkax.Names) string { return names.Group(kafkax.GroupAnalytics) }

// New returns the consumer; st must keep its offsets under Consumer(cfg.Names).
func New(cfg Config, st *store.Store, log *zap.Logger, reg prometheus.Registerer) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &App{cfg: cfg, store: st, log: log, m: newMetrics(reg)}, nil
}

// Run consumes until ctx ends and returns nil then. It blocks.
func (a *App) Run(ctx context.Context) error {
	return kafkax.RunGroup(ctx, kafkax.GroupConfig{
		Brokers:  a.cfg.Brokers,
		GroupID:  Consumer(a.cfg.Names),
		Topic:    a.cfg.Names.Topic(kafkax.TopicNormalized),
		MaxBatch: a.cfg.MaxBatch,
		Metrics:  a.m.group,
		Log:      a.log,
	}, a.open)
}

// open starts each partition at the offset stored in PostgreSQL, not the
// one committed to Kafka: PostgreSQL holds what was applied. Kafka's
// committed offset is still updated, for lag monitoring.
func (a *App) open(ctx context.Context, as kafkax.Assignment) (kafkax.Worker, int64, error) {
	next, ok, err := a.store.NextOffset(ctx, as.Topic, as.Partition)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		next = kafka.FirstOffset
	}
	a.log.Info("partition assigned", zap.Int("partition", as.Partition), zap.Int64("start_offset", next))
	return &worker{a: a, topic: as.Topic, partition: as.Partition}, next, nil
}

type worker struct {
	a         *App
	topic     string
	partition int
}

// Handle implements kafkax.Worker: decode, then apply in one transaction.
func (w *worker) Handle(ctx context.Context, batch []kafka.Message) error {
	start := time.Now()
	recs := make([]store.Record, len(batch))
	skipped := map[string]int{}
	for i, m := range batch {
		recs[i].Offset = m.Offset
		ev, reason := decode(m)
		if reason != "" {
			skipped[reason]++
			w.a.log.Warn("skipping a record", zap.Int("partition", w.partition), zap.Int64("offset", m.Offset),
				zap.ByteString("key", m.Key), zap.String("reason", reason))
			continue
		}
		recs[i].Event = &ev
	}
	res, err := w.apply(ctx, recs, skipped)
	if err != nil {
		return err
	}
	for d, n := range res.Decisions {
		w.a.m.decisions.WithLabelValues(d.String()).Add(float64(n))
	}
	for reason, n := range skipped {
		w.a.m.skipped.WithLabelValues(reason).Add(float64(n))
	}
	w.a.m.redelivered.Add(float64(res.AlreadyApplied))
	w.a.m.batch.Observe(time.Since(start).Seconds())
	return nil
}

// apply applies recs in one transaction. When PostgreSQL refuses a value
// (a data or integrity error, which no retry can fix) it applies the two
// halves in turn, down to the one record that fails alone, which is then
// skipped and counted (store_rejected) instead of the batch retried
// forever. The halves' results are summed.
func (w *worker) apply(ctx context.Context, recs []store.Record, skipped map[string]int) (store.Result, error) {
	res, err := w.a.store.Apply(ctx, w.topic, w.partition, recs)
	if err == nil || !isDataError(err) {
		return res, err
	}
	if len(recs) == 1 {
		w.a.log.Error("postgres refused a record; skipping it", zap.Int("partition", w.partition),
			zap.Int64("offset", recs[0].Offset), zap.Error(err))
		skipped["store_rejected"]++
		return w.a.store.Apply(ctx, w.topic, w.partition, []store.Record{{Offset: recs[0].Offset}})
	}
	mid := len(recs) / 2
	left, err := w.apply(ctx, recs[:mid], skipped)
	if err != nil {
		return left, err
	}
	right, err := w.apply(ctx, recs[mid:], skipped)
	for d, n := range left.Decisions {
		right.Decisions[d] += n
	}
	right.AlreadyApplied += left.AlreadyApplied
	right.Movies += left.Movies
	return right, err
}

// isDataError reports whether PostgreSQL refused a value (class 22, data
// exception; class 23, integrity violation): retrying cannot help.
func isDataError(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23"))
}

// Close implements kafkax.Worker. RunGroup drops the partition's lag.
func (w *worker) Close() {}

// decode reads a normalized record, or says why it is skipped: consumers
// skip (and count) what they do not understand rather than stop
// (schemas/VERSIONING.md).
func decode(m kafka.Message) (review.Event, string) {
	var ev review.Event
	if err := json.Unmarshal(m.Value, &ev); err != nil {
		return ev, "not_json"
	}
	switch {
	case ev.Op != review.OpUpsert && ev.Op != review.OpDelete:
		return ev, "unknown_op"
	case review.Validate(ev) != nil:
		// The sink refuses the same records (review.Validate), so the
		// statistics count what the store holds.
		return ev, "invalid_review"
	}
	return ev, ""
}

// Routes adds GET /v1/movies/{movie_id}/rating-stats to mux.
func (a *App) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/movies/{movie_id}/rating-stats", a.movieStats)
}

// MovieStats is the answer of GET /v1/movies/{movie_id}/rating-stats.
type MovieStats struct {
	MovieID string `json:"movie_id"`
	// Reviews counts live reviews, rated or not.
	Reviews int64 `json:"reviews"`
	// Count counts rated reviews; Mean is their mean rating (0 to 100),
	// null when none is rated.
	Count int64    `json:"count"`
	Mean  *float64 `json:"mean"`
	// Histogram counts ratings in ten buckets: [0,10), ..., [90,100].
	Histogram []int64 `json:"histogram"`
	// UpdatedAt is when the statistics last changed, null when never.
	UpdatedAt *time.Time `json:"updated_at"`
}

func (a *App) movieStats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("movie_id")
	if !review.ValidMovieID(id) {
		obs.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%q is not an IMDb title id (tt + 7 to 10 digits)", id))
		return
	}
	ms, found, err := a.store.Movie(r.Context(), id)
	if err != nil {
		a.log.Error("read movie statistics", zap.String("movie_id", id), zap.Error(err))
		obs.WriteError(w, http.StatusServiceUnavailable, "statistics are unavailable right now")
		return
	}
	obs.WriteJSON(w, http.StatusOK, answer(ms, found))
}

func answer(ms store.MovieStats, found bool) MovieStats {
	out := MovieStats{MovieID: ms.MovieID, Reviews: ms.Stats.Reviews, Count: ms.Stats.Ratings,
		Histogram: append([]int64(nil), ms.Stats.Histogram[:]...)}
	if mean, ok := ms.Stats.Mean(); ok {
		out.Mean = &mean
	}
	if found {
		t := ms.UpdatedAt.UTC()
		out.UpdatedAt = &t
	}
	return out
}

type metrics struct {
	decisions   *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	redelivered prometheus.Counter
	batch       prometheus.Histogram
	// group is the consumer group's metrics, kept by kafkax.RunGroup: the
	// lag per partition held.
	group *kafkax.GroupMetrics
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_analytics_events_total",
			Help: "Normalized changes applied to the statistics, by dedupe decision (new, update, duplicate, stale, conflict_won, conflict_lost).",
		}, []string{"decision"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reviewpipe_analytics_skipped_total",
			Help: "Records skipped, by reason: not understood (not_json, unknown_op, invalid_review) or refused by PostgreSQL (store_rejected).",
		}, []string{"reason"}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reviewpipe_analytics_redelivered_total",
			Help: "Records received again below the offset stored in PostgreSQL, skipped.",
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reviewpipe_analytics_batch_duration_seconds",
			Help:    "Time to apply one batch in one PostgreSQL transaction.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		group: kafkax.NewConsumerMetrics(reg).Group(kafkax.GroupAnalytics).WithDeprecatedLag(
			"reviewpipe_analytics_consumer_lag",
			"Records of reviews.normalized.v1 not yet applied, per partition held."),
	}
	for _, d := range dedupe.Decisions {
		m.decisions.WithLabelValues(d.String())
	}
	reg.MustRegister(m.decisions, m.skipped, m.redelivered, m.batch)
	return m
}
