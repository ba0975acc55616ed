// Command poller is a placeholder until its issue lands: it serves /healthz,
// /readyz and /metrics so that make run can supervise it.
package main

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/obs"
	"github.com/reviewpipe/reviewpipe/pkg/runner"
)

func main() {
	env := &config.Env{}
	runner.Main("poller", func() (*zap.Logger, error) { return obs.NewLogger("poller", env.String("LOG_LEVEL", "info")) },
		func(ctx context.Context, log *zap.Logger) error {
			mux := http.NewServeMux()
			obs.Mount(mux, obs.NewRegistry(), &obs.Health{})
			srv, err := obs.Listen(env.String("POLLER_ADDR", "127.0.0.1:8082"), mux)
			if err != nil {
				return err
			}
			g := runner.NewGroup(ctx)
			g.Go(func(context.Context) error { return srv.Serve() })
			g.OnShutdown(srv.Shutdown)
			return g.Wait()
		})
}
