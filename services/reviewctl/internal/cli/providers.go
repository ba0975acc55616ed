package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// providerInfo is one registered provider as --json prints it.
type providerInfo struct {
	Name      string  `json:"name"`
	SecretVar string  `json:"secret_var"`
	RateLimit float64 `json:"rate_limit_per_s"`
}

// providers prints the provider registry (pkg/provider) one line each, in
// registration order, for scripts that must list providers (scripts/run.sh
// makes a webhook secret for each). It needs no Kafka or PostgreSQL.
func (c *cmd) providers(_ context.Context, args []string) int {
	fs := c.newFlags("providers", "providers [--secret-vars | --json]")
	vars := fs.Bool("secret-vars", false, "print each provider's webhook secret variable instead of its name")
	asJSON := fs.Bool("json", false, "print name, secret_var and rate_limit_per_s of each provider as a JSON array")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("providers takes no arguments, got %q", fs.Args())
	}
	var out []providerInfo
	for _, r := range provider.Registered() {
		out = append(out, providerInfo{Name: r.Name(), SecretVar: r.SecretVar(), RateLimit: r.RateLimit})
	}
	if *asJSON {
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return c.errorf("encode providers: %v", err)
		}
		fmt.Fprintln(c.Out, string(b))
		return ExitOK
	}
	for _, p := range out {
		if *vars {
			fmt.Fprintln(c.Out, p.SecretVar)
		} else {
			fmt.Fprintln(c.Out, p.Name)
		}
	}
	return ExitOK
}
