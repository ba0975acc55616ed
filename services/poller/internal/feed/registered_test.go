package feed

import (
	"slices"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// TestEveryRegisteredProviderHasAPollingClient fails when a provider is
// registered in pkg/provider without a polling client here, or a client is
// keyed by a name nobody registered (docs/providers.md, "Adding a provider").
func TestEveryRegisteredProviderHasAPollingClient(t *testing.T) {
	registered := provider.Default().Names()
	if got := Known(); !slices.Equal(got, registered) {
		t.Fatalf("polling clients %v, registered providers %v: add the missing client to clients in feed.go (or its registry line)", got, registered)
	}
	c, _ := newTestClient(t, nil, nil)
	for _, r := range provider.Registered() {
		f, err := New(r.Name(), c)
		if err != nil || f.Name() != r.Name() {
			t.Errorf("New(%q) = %v, %v: the client must answer to its provider's name", r.Name(), f, err)
			continue
		}
		if got := PublishedLimit(r.Name()); got != r.RateLimit {
			t.Errorf("PublishedLimit(%q) = %v, want the registered %v", r.Name(), got, r.RateLimit)
		}
	}
}
