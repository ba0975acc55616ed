// Command receiver accepts providers' signed webhooks (Standard Webhooks)
// and publishes one raw event per review to reviews.raw.v1, answering 2xx
// only after Kafka acknowledged them with acks=all.
package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
	"github.com/reviewpipe/reviewpipe/services/receiver/internal/app"
)

func main() { runner.Service("receiver", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	common := config.ReadCommon(env)
	addr := env.String("RECEIVER_ADDR", "127.0.0.1:8081")
	adapters := provider.Default()
	cfg := app.Config{
		Keys:            map[string][][]byte{},
		MaxBody:         int64(env.Int("WEBHOOK_MAX_BODY", 1<<20)),
		BodyTimeout:     env.Duration("WEBHOOK_BODY_TIMEOUT", 10*time.Second),
		MaxInFlight:     env.Int("RECEIVER_MAX_IN_FLIGHT", 256),
		MaxPendingBytes: int64(env.Int("RECEIVER_MAX_PENDING_BYTES", 64<<20)),
		KafkaDeadline:   env.Duration("RECEIVER_KAFKA_DEADLINE", 5*time.Second),
		Tolerance:       env.Duration("WEBHOOK_TOLERANCE", webhook.DefaultTolerance),
	}
	for _, name := range adapters.Names() {
		keys, err := webhook.ParseSecrets(env.String(config.SecretVar(name), ""))
		if err != nil {
			return fmt.Errorf("%s: %w", config.SecretVar(name), err)
		}
		cfg.Keys[name] = keys
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", zap.Strings("brokers", common.Brokers), zap.String("addr", addr),
		zap.String("topic_namespace", common.TopicNamespace))

	names := kafkax.Names{Namespace: common.TopicNamespace}
	// Eager writers: a delivery on a quiet receiver is sent at once (no
	// linger), and those that come while a request is out share the next;
	// busy, a round lingers only while deliveries keep coming (lingerGap).
	raw := kafkax.NewEagerWriter(kafkax.WriterConfig{Brokers: common.Brokers, Topic: names.Topic(kafkax.TopicRaw), MaxAttempts: 3})
	defer raw.Close()
	dlq := kafkax.NewEagerWriter(kafkax.WriterConfig{Brokers: common.Brokers, Topic: names.Topic(kafkax.TopicDLQ), MaxAttempts: 3})
	defer dlq.Close()

	reg := obs.NewRegistry()
	rc, err := app.New(cfg, adapters, raw, dlq, log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("kafka", obs.KafkaCheck(common.Brokers))
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, health, log, rc.Routes); err != nil {
		return err
	}
	// Stop taking deliveries, let in-flight ones finish their Kafka
	// writes, then the deferred closes flush the writers.
	return g.Wait()
}
