// Command poller syncs each provider's polling API into reviews.raw.v1
// (live change feeds, refresh and backfill requests from
// reviews.sync-requests.v1), one replica per provider at a time, within the
// provider's rate limit. See internal/app.
package main

import (
	"context"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/app"
	"github.com/reviewpipe/reviewpipe/services/poller/internal/store"
)

func main() { runner.Service("poller", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	adapters := provider.Default()
	s, err := readSettings(env, adapters)
	if err != nil {
		return err
	}
	s.log(log)

	db, err := pgstore.Open(ctx, s.common.DatabaseURL, 8)
	if err != nil {
		return err
	}
	defer db.Close()
	names := kafkax.Names{Namespace: s.common.TopicNamespace}
	raw := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.common.Brokers, Topic: names.Topic(kafkax.TopicRaw)})
	defer raw.Close()
	dlq := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.common.Brokers, Topic: names.Topic(kafkax.TopicDLQ)})
	defer dlq.Close()

	reg := obs.NewRegistry()
	st := store.New(db)
	poller, err := app.New(s.app, adapters, st, raw, dlq, log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("kafka", obs.KafkaCheck(s.common.Brokers))
	health.Add("postgres", st.Ping)
	g := runner.NewGroup(ctx)
	if err := g.Serve(s.addr, reg, health, log, nil); err != nil {
		return err
	}
	// Workers stop with the group's context: the pollers finish the page in
	// hand (its Kafka write runs to its own deadline) and release their
	// leases; the consumer commits only what it queued. Then the deferred
	// closes flush the writers and close the pool.
	g.Go(poller.Run)
	g.Go(func(ctx context.Context) error {
		return poller.ConsumeRequests(ctx, kafkax.GroupConfig{
			Brokers: s.common.Brokers,
			GroupID: names.Group(kafkax.GroupPoller),
			Topic:   names.Topic(kafkax.TopicSyncRequests),
			Metrics: kafkax.NewConsumerMetrics(reg).Group(kafkax.GroupPoller),
			Log:     log,
		})
	})
	return g.Wait()
}
