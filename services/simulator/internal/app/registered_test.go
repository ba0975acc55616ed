package app

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// TestEveryRegisteredProviderIsSimulated fails when a provider is
// registered in pkg/provider but the simulator lacks part of its shape, or
// the simulator has a shape for a provider nobody registered; and it drives
// each registered provider end to end: a control change with a webhook
// arrives signed and splits with the provider's own adapter, and both of
// its polling API routes list the review.
func TestEveryRegisteredProviderIsSimulated(t *testing.T) {
	registered := provider.Default().Names()
	for table, keys := range map[string][]string{
		"webhookBodies": slices.Sorted(maps.Keys(webhookBodies)),
		"pollingAPIs":   slices.Sorted(maps.Keys(pollingAPIs)),
	} {
		if !slices.Equal(keys, registered) {
			t.Errorf("%s has %v, registered providers are %v", table, keys, registered)
		}
	}
	for _, r := range provider.Registered() {
		if err := simulated(r.Name()); err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	s := newTestSim(t, Config{RateLimits: highLimits()}, 0)
	const movie = "tt0000042"
	for _, r := range provider.Registered() {
		name := r.Name()
		id := "reg-" + name
		res := s.change(t, name, "upsert", data(id, movie), true)
		if res.WebhookID == nil {
			t.Fatalf("%s: the change was recorded without a webhook", name)
		}
		hook := *res.WebhookID
		eventually(t, name+" webhook", func() bool {
			for _, d := range s.recv.deliveries() {
				if d.id == hook {
					return true
				}
			}
			return false
		})
		for _, d := range s.recv.deliveries() {
			if d.id != hook {
				continue
			}
			if !d.verified || d.provider != name {
				t.Errorf("%s: webhook to %q, verified %v", name, d.provider, d.verified)
			}
			changes, err := r.Adapter.Split(d.body)
			if err != nil || len(changes) != 1 || changes[0].ReviewID != id {
				t.Errorf("%s: its adapter splits the webhook body into %+v, %v; want one change of %s", name, changes, err, id)
			}
		}
		routes := pollingAPIs[name](s.app, s.app.sims[name])
		if len(routes) < 2 {
			t.Errorf("%s: %d polling API routes, want its change feed and its listing of one movie", name, len(routes))
		}
		for pattern := range routes {
			path := pattern
			if i := strings.Index(path, "{"); i >= 0 {
				path = path[:i] + movie + path[strings.Index(path, "}")+1:]
			}
			got, b := s.get(t, path)
			if got.StatusCode != http.StatusOK || !strings.Contains(string(b), id) {
				t.Errorf("%s: GET %s = %d %s, want 200 listing %s", name, path, got.StatusCode, b, id)
			}
		}
	}
}
