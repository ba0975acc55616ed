// Package cli implements reviewctl's subcommands. Each subcommand is a
// function taking its arguments and writers and returning an exit code:
// 0 success, 1 a finding (drift in a dry run), 2 an error.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/reviewpipe/reviewpipe/pkg/config"
)

// Exit codes shared by every subcommand.
const (
	ExitOK    = 0
	ExitDrift = 1
	ExitError = 2
)

// IO is what a subcommand writes to and reads its settings from.
type IO struct {
	Out, Err io.Writer
	Env      *config.Env
}

// Errorf prints one clear line on stderr and returns ExitError.
func (o IO) Errorf(format string, args ...any) int {
	fmt.Fprintf(o.Err, "reviewctl: "+format+"\n", args...)
	return ExitError
}

type command struct {
	summary string
	run     func(ctx context.Context, args []string, o IO) int
}

var commands = map[string]command{}

// register adds a subcommand; called from each subcommand file's init.
func register(name, summary string, run func(ctx context.Context, args []string, o IO) int) {
	commands[name] = command{summary: summary, run: run}
}

// Run dispatches args[0] to its subcommand and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := IO{Out: stdout, Err: stderr, Env: &config.Env{}}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitError
		}
		return ExitOK
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return o.Errorf("unknown command %q", args[0])
	}
	return c.run(ctx, args[1:], o)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: reviewctl <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nSettings come from the environment, as for the services: `set -a; source .run/env; set +a` after `make run` (set -a exports them).\nRun `reviewctl <command> -h` for a command's flags.")
}

// newFlags returns a flag set that prints its usage to o.Err.
func newFlags(name, usageLine string, o IO) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(o.Err)
	fs.Usage = func() {
		fmt.Fprintf(o.Err, "usage: reviewctl %s\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
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
