// Command processor consumes reviews.raw.v1, normalizes each event with its
// provider's adapter, drops duplicates and stale versions against keyed
// state restored from its changelog, and publishes canonical changes to
// reviews.normalized.v1 (dead letters to reviews.dlq.v1).
package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/services/processor/internal/processor"
)

func main() { runner.Service("processor", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	common := config.ReadCommon(env)
	addr := env.String("PROCESSOR_ADDR", "127.0.0.1:8083")
	names := kafkax.Names{Namespace: common.TopicNamespace}
	cfg := processor.Config{
		Brokers:      common.Brokers,
		Names:        names,
		MaxBatch:     env.Int("PROCESSOR_MAX_BATCH", 500),
		Linger:       env.Duration("PROCESSOR_LINGER", 0),
		WriteTimeout: env.Duration("PROCESSOR_WRITE_TIMEOUT", 0),
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", zap.Strings("brokers", common.Brokers), zap.String("addr", addr),
		zap.String("topic_namespace", common.TopicNamespace))

	reg := obs.NewRegistry()
	p, err := processor.New(cfg, provider.Default(), func() (processor.Writers, func() error) {
		return processor.NewWriters(common.Brokers, names)
	}, log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("kafka", obs.KafkaCheck(common.Brokers))
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, health, log, nil); err != nil {
		return err
	}
	// Cancelling the group's context stops fetching; each partition's
	// worker finishes or abandons its batch (uncommitted, so it comes
	// again), then the consumer group leaves.
	g.Go(p.Run)
	return g.Wait()
}
