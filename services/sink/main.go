// Command sink consumes reviews.normalized.v1 and writes each batch of
// changes, with its consumed offsets, in one PostgreSQL transaction,
// guarded by version, resuming from the offsets stored in PostgreSQL.
package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/app"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/store"
)

func main() { runner.Service("sink", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	common := config.ReadCommon(env)
	addr := env.String("SINK_ADDR", "127.0.0.1:8084")
	names := kafkax.Names{Namespace: common.TopicNamespace}
	cfg := app.Config{
		Brokers:         common.Brokers,
		Names:           names,
		MaxBatch:        env.Int("SINK_MAX_BATCH", 1000),
		Linger:          env.Duration("SINK_LINGER", 0),
		BusyLinger:      env.Duration("SINK_BUSY_LINGER", app.DefaultBusyLinger),
		TxTimeout:       env.Duration("SINK_TX_TIMEOUT", 30*time.Second),
		BreakerFailures: env.Int("SINK_BREAKER_FAILURES", 3),
		BreakerOpen:     env.Duration("SINK_BREAKER_OPEN", 5*time.Second),
	}
	// Batches of at least SINK_COPY_FROM rows go through COPY, smaller
	// ones through UNNEST (measured: see README); 0 never uses COPY.
	copyFrom := env.Int("SINK_COPY_FROM", store.DefaultCopyFrom)
	if copyFrom < 0 {
		return fmt.Errorf("SINK_COPY_FROM must be 0 (never COPY) or a number of rows, got %d", copyFrom)
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", zap.Strings("brokers", common.Brokers), zap.String("addr", addr),
		zap.String("database", config.MaskURL(common.DatabaseURL)), zap.String("topic_namespace", common.TopicNamespace),
		zap.Int("max_batch", cfg.MaxBatch), zap.Int("copy_from", copyFrom))

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := pgstore.WaitReady(wctx, common.DatabaseURL)
	cancel()
	if err != nil {
		return err
	}
	db, err := pgstore.OpenWith(ctx, common.DatabaseURL, 8, store.KeyedPlans)
	if err != nil {
		return err
	}
	defer db.Close()
	dlq := kafkax.NewWriter(kafkax.WriterConfig{Brokers: common.Brokers, Topic: names.Topic(kafkax.TopicDLQ)})
	defer dlq.Close()

	reg := obs.NewRegistry()
	sink, err := app.New(cfg, store.New(db, copyFrom), dlq, log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("postgres", obs.PostgresCheck(db))
	health.Add("kafka", obs.KafkaCheck(common.Brokers))
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, health, log, nil); err != nil {
		return err
	}
	// RunGroup returns once ctx ends and the in-flight batch's
	// transaction has finished or rolled back; the deferred closes then
	// flush the dead-letter writer and close the pool.
	g.Go(sink.Run)
	return g.Wait()
}
