// Command analytics is the reference consumer of reviews.normalized.v1: it
// keeps per-movie rating statistics (count, mean, histogram) in PostgreSQL,
// correct under updates, deletes and redelivery, and serves them at
// GET /v1/movies/{movie_id}/rating-stats.
package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/app"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/store"
)

func main() { runner.Service("analytics", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	common := config.ReadCommon(env)
	addr := env.String("ANALYTICS_ADDR", "127.0.0.1:8085")
	names := kafkax.Names{Namespace: common.TopicNamespace}
	cfg := app.Config{Brokers: common.Brokers, Names: names, MaxBatch: env.Int("ANALYTICS_MAX_BATCH", 500)}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", zap.Strings("brokers", common.Brokers), zap.String("database", config.MaskURL(common.DatabaseURL)),
		zap.String("addr", addr), zap.String("topic_namespace", common.TopicNamespace))

	db, err := pgstore.Open(ctx, common.DatabaseURL, 8)
	if err != nil {
		return err
	}
	defer db.Close()
	// Idempotent, under an advisory lock: the consumer's tables exist even
	// when it runs without `reviewctl setup`.
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		return err
	}
	reg := obs.NewRegistry()
	a, err := app.New(cfg, store.New(db, app.Consumer(names)), log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("kafka", obs.KafkaCheck(common.Brokers))
	health.Add("postgres", obs.PostgresCheck(db))
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, health, log, a.Routes); err != nil {
		return err
	}
	// Cancelling stops fetching; a batch in flight either commits its
	// transaction or rolls back and comes again.
	g.Go(a.Run)
	return g.Wait()
}
