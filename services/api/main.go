// Command api serves the read API, live updates and the web page from
// PostgreSQL only, and queues refresh requests on reviews.sync-requests.v1.
// It never calls a provider.
package main

import (
	"context"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
	"github.com/reviewpipe/reviewpipe/services/api/internal/app"
	"github.com/reviewpipe/reviewpipe/services/api/internal/store"
)

func main() { runner.Service("api", run) }

func run(ctx context.Context, log *zap.Logger, env *config.Env) error {
	common := config.ReadCommon(env)
	addr := env.String("API_ADDR", "127.0.0.1:8080")
	names := kafkax.Names{Namespace: common.TopicNamespace}
	cfg := app.Config{
		Providers:          env.List("PROVIDERS", strings.Join(provider.Default().Names(), ",")),
		Objective:          env.Duration("FRESHNESS_OBJECTIVE", 60*time.Second),
		Objectives:         map[string]time.Duration{},
		CollapseWindow:     env.Duration("REFRESH_COLLAPSE_WINDOW", 30*time.Second),
		RefreshRate:        env.Float("REFRESH_RATE", 0.2),
		RefreshBurst:       env.Int("REFRESH_BURST", 5),
		RefreshGlobalRate:  env.Float("REFRESH_GLOBAL_RATE", 50),
		RefreshGlobalBurst: env.Int("REFRESH_GLOBAL_BURST", 0),
		RefreshTimeout:     env.Duration("REFRESH_TIMEOUT", 5*time.Second),
		TrustedProxies:     env.List("TRUSTED_PROXIES", ""),
		SSEMaxPerClient:    env.Int("SSE_MAX_PER_CLIENT", 20),
		SSEMax:             env.Int("SSE_MAX", 10000),
		SSEWriteTimeout:    env.Duration("SSE_WRITE_TIMEOUT", 10*time.Second),
		OpsToken:           runner.OpsToken(env),
		MaxAge:             env.Duration("CACHE_MAX_AGE", 2*time.Second),
		Heartbeat:          env.Duration("SSE_HEARTBEAT", 15*time.Second),
		HealthTTL:          env.Duration("PROVIDER_HEALTH_TTL", time.Second),
		CacheBytes:         int64(env.Int("API_CACHE_BYTES", app.DefaultCacheBytes)),
		CacheRefresh:       env.Bool("API_CACHE_REFRESH", true),
		Brokers:            common.Brokers,
		Names:              names,
	}
	for _, p := range cfg.Providers {
		name := "FRESHNESS_OBJECTIVE_" + config.EnvSuffix(p)
		if d := env.Duration(name, 0); d != 0 {
			cfg.Objectives[p] = d
		}
	}
	if err := env.Err(); err != nil {
		return err
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = -1 // API_CACHE_BYTES=0: no cache (Config's zero is the default)
	}
	log.Info("starting", zap.Strings("brokers", common.Brokers), zap.String("addr", addr),
		zap.String("database", config.MaskURL(common.DatabaseURL)), zap.String("topic_namespace", common.TopicNamespace),
		zap.Strings("providers", cfg.Providers), zap.Duration("freshness_objective", cfg.Objective),
		zap.Strings("trusted_proxies", cfg.TrustedProxies), zap.Int("sse_max_per_client", cfg.SSEMaxPerClient), zap.Int("sse_max", cfg.SSEMax),
		zap.Float64("refresh_global_rate", cfg.RefreshGlobalRate), zap.Bool("ops_token", cfg.OpsToken != ""),
		zap.Int64("cache_bytes", max(0, cfg.CacheBytes)), zap.Bool("cache_refresh", cfg.CacheRefresh))

	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err := pgstore.WaitReady(wctx, common.DatabaseURL)
	cancel()
	if err != nil {
		return err
	}
	db, err := pgstore.Open(ctx, common.DatabaseURL, 16)
	if err != nil {
		return err
	}
	defer db.Close()
	syncw := kafkax.NewWriter(kafkax.WriterConfig{Brokers: common.Brokers, Topic: names.Topic(kafkax.TopicSyncRequests)})
	defer syncw.Close()

	reg := obs.NewRegistry()
	api, err := app.New(cfg, store.New(db), syncw, log, reg)
	if err != nil {
		return err
	}
	health := &obs.Health{}
	health.Add("postgres", obs.PostgresCheck(db))
	health.Add("kafka", obs.KafkaCheck(common.Brokers))
	health.Add("live_updates", api.LiveUpdatesReady)
	g := runner.NewGroup(ctx)
	if err := g.Serve(addr, reg, health, log, func(mux *http.ServeMux) { mux.Handle("/", api.Handler()) }); err != nil {
		return err
	}
	g.Go(func(ctx context.Context) error { return api.RunListener(ctx, common.DatabaseURL) })
	g.Go(api.RunDeadLetters)
	// End the event streams first (they never finish by themselves), then
	// stop taking requests and let in-flight ones finish.
	g.OnShutdown(api.CloseStreams)
	return g.Wait()
}
