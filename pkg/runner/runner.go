// Package runner is the main-function skeleton of every service: a context
// cancelled on SIGINT or SIGTERM, workers under an errgroup, and ordered
// shutdown steps within a deadline.
package runner

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
)

// Main builds the logger with newLog, runs run until it returns, logs its
// error once and exits 1 on failure. It never returns.
func Main(service string, newLog func() (*zap.Logger, error), run func(ctx context.Context, log *zap.Logger) error) {
	log, err := newLog()
	if err != nil {
		os.Stderr.WriteString(service + ": " + err.Error() + "\n")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, log)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error(service+" failed", zap.Error(err))
		_ = log.Sync()
		os.Exit(1)
	}
	log.Info(service + " stopped")
	_ = log.Sync()
}

// Service is the whole main of a service: it reads LOG_LEVEL, builds the
// logger naming service, and runs run with the signal context, the logger
// and the environment (see Main). It never returns.
func Service(service string, run func(ctx context.Context, log *zap.Logger, env *config.Env) error) {
	env := &config.Env{}
	Main(service, func() (*zap.Logger, error) { return obs.NewLogger(service, env.String("LOG_LEVEL", "info")) },
		func(ctx context.Context, log *zap.Logger) error { return run(ctx, log, env) })
}

// OpsToken reads OPS_TOKEN, the bearer token of every operator surface
// (every service's /metrics, the api's /v1/ops/*); empty leaves them public.
func OpsToken(env *config.Env) string { return strings.TrimSpace(env.String("OPS_TOKEN", "")) }

// Group runs long-lived workers and, once ctx ends or any worker fails,
// runs the shutdown steps in the order they were added.
type Group struct {
	eg       *errgroup.Group
	ctx      context.Context
	shutdown []func(context.Context) error
	servers  []*obs.Server
	// Deadline bounds all shutdown steps together (default 20s).
	Deadline time.Duration
}

// NewGroup returns a group whose workers see a context cancelled when ctx
// ends or the first worker fails.
func NewGroup(ctx context.Context) *Group {
	eg, gctx := errgroup.WithContext(ctx)
	return &Group{eg: eg, ctx: gctx}
}

// Context is the workers' context.
func (g *Group) Context() context.Context { return g.ctx }

// Go starts a worker; its error (other than context.Canceled) stops the group.
func (g *Group) Go(f func(ctx context.Context) error) {
	g.eg.Go(func() error {
		err := f(g.ctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
}

// OnShutdown adds a step run, in order of adding, once the group stops.
func (g *Group) OnShutdown(f func(ctx context.Context) error) { g.shutdown = append(g.shutdown, f) }

// Serve listens on addr with a mux holding /metrics, /healthz and /readyz
// (obs.MountWith) plus what routes adds (nil for none), and serves it as a
// worker, with obs.ServerConfig's read, write and idle timeouts. With
// OPS_TOKEN set, /metrics answers 401 without "Authorization: Bearer
// <OPS_TOKEN>" (docs/contract.md §8); why a readiness check fails goes to log, not
// to the public /readyz. With PPROF=true it also serves net/http/pprof under
// /debug/pprof/, behind the same token (off by default: profiles reveal
// internals, and the receiver's port faces providers). The server is shut
// down after every OnShutdown step, so steps that end long-lived responses
// (event streams) run first. It fails if addr cannot be bound.
func (g *Group) Serve(addr string, reg *prometheus.Registry, health *obs.Health, log *zap.Logger, routes func(*http.ServeMux)) error {
	env := &config.Env{}
	token := OpsToken(env)
	mux := http.NewServeMux()
	obs.MountWith(mux, reg, health, obs.MountConfig{OpsToken: token, Log: log})
	if token == "" {
		log.Info("OPS_TOKEN is not set: /metrics is public")
	}
	if env.Bool("PPROF", false) {
		guard := func(h http.HandlerFunc) http.Handler { return obs.RequireToken(token, h) }
		mux.Handle("/debug/pprof/", guard(pprof.Index))
		mux.Handle("/debug/pprof/cmdline", guard(pprof.Cmdline))
		mux.Handle("/debug/pprof/profile", guard(pprof.Profile))
		mux.Handle("/debug/pprof/symbol", guard(pprof.Symbol))
		mux.Handle("/debug/pprof/trace", guard(pprof.Trace))
		log.Warn("pprof enabled on /debug/pprof/ (PPROF=true)")
	}
	if routes != nil {
		routes(mux)
	}
	srv, err := obs.ListenWith(addr, mux, obs.ServerConfig{})
	if err != nil {
		return err
	}
	log.Info("listening", zap.String("addr", srv.Addr()))
	g.servers = append(g.servers, srv)
	g.Go(func(context.Context) error { return srv.Serve() })
	return nil
}

// Wait blocks until ctx ends or a worker fails, runs the shutdown steps,
// waits for every worker, and returns the first worker error or shutdown error.
func (g *Group) Wait() error {
	<-g.ctx.Done()
	d := g.Deadline
	if d == 0 {
		d = 20 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var errs []error
	for _, f := range g.shutdown {
		if err := f(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range g.servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := g.eg.Wait(); err != nil {
		return err
	}
	return errors.Join(errs...)
}
