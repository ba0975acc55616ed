package provider

import (
	"fmt"
	"slices"
	"sort"

	"github.com/reviewpipe/reviewpipe/pkg/config"
)

// registered is every provider reviewpipe knows, one line each: adding a
// provider is its adapter file, its simulator shape and one line here
// (docs/providers.md, "Adding a provider"). Everything else that lists
// providers derives from this table: the receiver's routes and secrets
// (WEBHOOK_SECRET_<PROVIDER>), the poller's providers and POLL_RATE_
// defaults, the processor's metric labels, the api's PROVIDERS default, the
// simulator's providers and rate limits, `reviewctl providers` (which
// scripts/run.sh asks for the secrets it makes). The order is the
// simulator generator's: keep new lines at the end so a seed replays the
// same changes.
var registered = []Registration{
	{Adapter: Generic{}, RateLimit: 20},
	{Adapter: Cinescore{}, RateLimit: 10},
	{Adapter: Reelpulse{}, RateLimit: 5},
}

// Registration is one provider: its adapter and what the rest of reviewpipe
// needs to know about it beyond its payloads.
type Registration struct {
	// Adapter splits and normalizes the provider's payloads; its Name is
	// the provider's name.
	Adapter Adapter
	// RateLimit is the provider API's published limit in requests per
	// second: the simulator answers 429 past it (SIMULATOR_RATE_LIMIT_
	// <PROVIDER> overrides) and the poller allows itself as much
	// (POLL_RATE_<PROVIDER> overrides).
	RateLimit float64
}

// Name is the registered provider's name.
func (r Registration) Name() string { return r.Adapter.Name() }

// SecretVar is the variable holding the provider's webhook secrets
// (config.SecretVar).
func (r Registration) SecretVar() string { return config.SecretVar(r.Name()) }

// Registered returns every provider reviewpipe knows, in registration
// order. The slice is a copy; the caller may keep or change it.
func Registered() []Registration { return slices.Clone(registered) }

// Lookup returns the registration of the named provider, or false.
func Lookup(name string) (Registration, bool) {
	for _, r := range registered {
		if r.Name() == name {
			return r, true
		}
	}
	return Registration{}, false
}

// SecretVars returns the webhook secret variable of every registered
// provider, in registration order.
func SecretVars() []string {
	out := make([]string, len(registered))
	for i, r := range registered {
		out[i] = r.SecretVar()
	}
	return out
}

// Default returns the registry of every provider reviewpipe knows.
func Default() *Registry {
	adapters := make([]Adapter, len(registered))
	for i, r := range registered {
		adapters[i] = r.Adapter
	}
	return NewRegistry(adapters...)
}

// checkRegistered refuses a table with an empty, repeated or badly spelled
// name; a test runs it on the table, so a bad line fails `go test`.
func checkRegistered(rs []Registration) error {
	seen := map[string]bool{}
	for i, r := range rs {
		n := r.Name()
		switch {
		case !validName(n):
			return fmt.Errorf("provider %d: name %q must be 1 to 32 of a-z, 0-9 and '-', starting with a letter (it is a URL segment, a key prefix and, upper-cased, a variable suffix)", i, n)
		case seen[n]:
			return fmt.Errorf("provider %q is registered twice", n)
		case !(r.RateLimit > 0):
			return fmt.Errorf("provider %q: published rate limit must be > 0 requests per second, got %v", n, r.RateLimit)
		}
		seen[n] = true
	}
	return nil
}

func validName(n string) bool {
	if len(n) == 0 || len(n) > 32 || n[0] < 'a' || n[0] > 'z' {
		return false
	}
	for _, c := range []byte(n) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Registry finds adapters by provider name. It is read-only after
// construction and safe for concurrent use.
type Registry struct{ m map[string]Adapter }

// NewRegistry returns a registry of the given adapters.
func NewRegistry(adapters ...Adapter) *Registry {
	r := &Registry{m: make(map[string]Adapter, len(adapters))}
	for _, a := range adapters {
		r.m[a.Name()] = a
	}
	return r
}

// Get returns the adapter for name, or false.
func (r *Registry) Get(name string) (Adapter, bool) {
	a, ok := r.m[name]
	return a, ok
}

// Names lists the registered providers, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
