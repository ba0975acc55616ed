// Command reviewctl is reviewpipe's operator CLI: set-up, readiness,
// reconciliation, replay, backfill and dead-letter redrive. It reads the same
// variables as the services (set -a; source .run/env; set +a).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := cli.App{Out: os.Stdout, Err: os.Stderr, Lookup: lookupEnv, Providers: provider.Default}
	code := app.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// lookupEnv reads a variable of the process environment; set but empty
// counts as unset, as for the services.
func lookupEnv(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}
