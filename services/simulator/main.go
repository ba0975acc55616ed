// Command simulator stands in for the third-party review providers (every
// provider registered in pkg/provider): their polling APIs with pagination and
// rate limits, their signed webhooks to the receiver, a control API to
// change catalogues, inject faults and read the expected truth, and a
// trickle of generated changes. See docs/providers.md.
package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/app"
	"github.com/reviewpipe/reviewpipe/services/simulator/internal/webhooks"
)

func main() { runner.Service("simulator", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	addr := env.String("SIMULATOR_ADDR", "127.0.0.1:8090")
	seed := uint64(env.Int("SIMULATOR_SEED", 0))
	seedSet := env.String("SIMULATOR_SEED", "") != ""
	if !seedSet {
		seed = uint64(time.Now().UnixNano())
	}
	cfg := app.Config{
		APIKey:      env.String("PROVIDER_API_KEY", "sim-key"),
		RateLimits:  map[string]float64{},
		Seed:        seed,
		TricklePerS: env.Float("SIMULATOR_TRICKLE_PER_S", 0.5),
	}
	hooks := webhooks.Config{
		ReceiverURL: env.String("RECEIVER_URL", "http://127.0.0.1:8081"),
		Keys:        map[string][]byte{},
		Workers:     env.Int("SIMULATOR_WEBHOOK_WORKERS", 4),
		GiveUp:      env.Duration("SIMULATOR_WEBHOOK_GIVE_UP", 10*time.Minute),
	}
	var unsigned []string
	for _, r := range provider.Registered() {
		p := r.Name()
		cfg.RateLimits[p] = env.Float("SIMULATOR_RATE_LIMIT_"+config.EnvSuffix(p), r.RateLimit)
		keys, err := webhook.ParseSecrets(env.String(r.SecretVar(), ""))
		if err != nil {
			return fmt.Errorf("%s: %w", r.SecretVar(), err)
		}
		if len(keys) == 0 {
			unsigned = append(unsigned, p)
			continue
		}
		hooks.Keys[p] = keys[0]
	}
	if err := env.Err(); err != nil {
		return err
	}
	log.Info("starting", zap.String("addr", addr), zap.String("receiver_url", hooks.ReceiverURL),
		zap.String("api_key", config.Mask(cfg.APIKey)), zap.Uint64("seed", seed), zap.Bool("seed_from_env", seedSet),
		zap.Float64("trickle_per_s", cfg.TricklePerS), zap.Any("rate_limits", cfg.RateLimits))
	if len(unsigned) > 0 {
		log.Warn("no webhook secret: these providers are poll-only", zap.Strings("providers", unsigned))
	}

	reg := obs.NewRegistry()
	sender, err := webhooks.New(hooks, log, reg)
	if err != nil {
		return err
	}
	sim, err := app.New(cfg, sender, log, reg)
	if err != nil {
		return err
	}
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, &obs.Health{}, log, sim.Routes); err != nil {
		return err
	}
	g.Go(sim.Trickle)
	g.Go(sender.Run)
	return g.Wait()
}
