// Command reviewctl is reviewpipe's operator CLI: set-up, readiness,
// reconciliation, replay, backfill and dead-letter redrive. It reads the same
// variables as the services (set -a; source .run/env; set +a).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
