// Package cli is reviewctl's command layer: an explicit table of
// subcommands, each of which parses its flags, calls the package that
// decides (reconcile, deadletters, replay) with adapters for Kafka and
// PostgreSQL, and prints the outcome. Every subcommand returns an exit
// code: 0 success, 1 a finding (drift in a dry run), 2 an error, which is
// one line on stderr.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/config"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// Exit codes shared by every subcommand.
const (
	ExitOK    = 0
	ExitDrift = 1
	ExitError = 2
)

// App is reviewctl with its dependencies. The zero value is not usable:
// Out, Err and Providers are required. Run may be called more than once;
// each run reads its settings afresh.
type App struct {
	// Out receives reports; Err progress, notes and errors.
	Out, Err io.Writer
	// Lookup reads a setting by name; nil reads the process environment
	// (config.Env's zero value), as the services do.
	Lookup func(name string) (string, bool)
	// Providers returns the provider registry the commands normalize
	// with: the processor's own (provider.Default) in the binary.
	Providers func() *provider.Registry
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// command is one row of the command table.
type command struct {
	name, summary string
	run           func(c *cmd, ctx context.Context, args []string) int
}

// commands is the command table, in the order usage lists it.
var commands = []command{
	{"backfill", "queue a historical pull of a provider (--provider P --since T); backfill status", (*cmd).backfill},
	{"dlq", "dead letters: list, show ID, redrive [--dry-run] (reviews.dlq.v1)", (*cmd).dlq},
	{"providers", "list the registered providers (--secret-vars: their WEBHOOK_SECRET_ variables; --json)", (*cmd).providers},
	{"reconcile", "re-derive the expected state from reviews.raw.v1 and diff it with the store; --apply repairs", (*cmd).reconcile},
	{"replay", "re-drive raw events of a time window through processing (--from T [--to T] [--provider P])", (*cmd).replay},
	{"setup", "create the Kafka topics and apply the PostgreSQL migrations (idempotent)", (*cmd).setup},
	{"wait", "wait until Kafka or PostgreSQL answers (wait kafka|postgres)", (*cmd).wait},
}

// cmd is one run of a command: the App and the settings it reads.
type cmd struct {
	App
	env *config.Env
}

// Run dispatches args[0] to its subcommand and returns the exit code. It
// blocks until the subcommand is done or ctx ends.
func (a App) Run(ctx context.Context, args []string) int {
	c := &cmd{App: a, env: &config.Env{Lookup: a.Lookup}}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(a.Err)
		if len(args) == 0 {
			return ExitError
		}
		return ExitOK
	}
	for _, cm := range commands {
		if cm.name == args[0] {
			return cm.run(c, ctx, args[1:])
		}
	}
	usage(a.Err)
	return c.errorf("unknown command %q", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: reviewctl <command> [flags]\n\nCommands:")
	for _, cm := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", cm.name, cm.summary)
	}
	fmt.Fprintln(w, "\nSettings come from the environment, as for the services: `set -a; source .run/env; set +a` after `make run` (set -a exports them).\nRun `reviewctl <command> -h` for a command's flags.")
}

// errorf prints one clear line on stderr and returns ExitError.
func (c *cmd) errorf(format string, args ...any) int {
	fmt.Fprintf(c.Err, "reviewctl: "+format+"\n", args...)
	return ExitError
}

// now is the App's clock.
func (c *cmd) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// progress reports long steps on stderr.
func (c *cmd) progress() progress.Func { return progress.To(c.Err) }

// newFlags returns a flag set that prints its usage to stderr.
func (c *cmd) newFlags(name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.Err)
	fs.Usage = func() {
		fmt.Fprintf(c.Err, "usage: reviewctl %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// knownProviders returns the registry, or an error naming the first of
// names it has no adapter for.
func (c *cmd) knownProviders(names ...string) (*provider.Registry, error) {
	reg := c.Providers()
	for _, p := range names {
		if _, ok := reg.Get(p); !ok {
			return nil, fmt.Errorf("unknown provider %q (known: %s)", p, strings.Join(reg.Names(), ", "))
		}
	}
	return reg, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
