// Package feed speaks the polling APIs of the providers (docs/providers.md):
// each provider's change feed, its current-state listing of one movie, and
// its cursor, behind one interface. Pages carry the provider's events as the
// exact bytes it sent, never re-encoded.
package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// Query says which page of a feed or listing to fetch.
type Query struct {
	// From is a saved cursor ("" for none): an updated_since time for
	// generic, modifiedSince milliseconds for cinescore, an opaque change
	// token for reelpulse; for listings, the listing's page token.
	From string
	// Since, when From is "", starts the feed at the first change recorded
	// at or after it (backfills); zero means the feed's beginning.
	Since time.Time
	// Page is the 1-based page of a paged query (0 means 1).
	Page int
	// Size is the page size asked for (0: the provider's default).
	Size int
}

// Page is one page of a feed or listing.
type Page struct {
	// Events are the provider's events, each exactly as its webhooks carry
	// it, in the provider's order.
	Events []json.RawMessage
	// Next is the cursor that covers every change up to the end of this
	// page: after the page's events are stored, saving Next loses nothing.
	// Empty for listings.
	Next string
	// More says a next page waits; NextQuery fetches it.
	More      bool
	NextQuery Query
	// Answer is the HTTP answer the page came from (budget headers).
	Answer Answer
}

// Feed is one provider's polling API. Implementations are safe for
// concurrent use; every method that calls the provider sends exactly one
// request, so the caller's rate budget counts requests one by one.
type Feed interface {
	// Name is the provider's name.
	Name() string
	// Changes fetches one page of the change feed.
	Changes(ctx context.Context, q Query) (Page, error)
	// Movie fetches one page of the current state of one movie's reviews
	// (q.From is the listing's page token, q.Page its page number).
	Movie(ctx context.Context, movieID string, q Query) (Page, error)
	// Rewind moves a saved cursor back by the overlap window so a new pass
	// re-reads changes recorded late; cursors that are exact positions
	// (change tokens) come back unchanged.
	Rewind(cursor string, overlap time.Duration) string
	// Later returns whichever of two cursors is further along the feed, so
	// a page of a rewound pass never moves the saved cursor back.
	Later(saved, next string) string
	// CursorTime is the provider's record time a cursor stands at, when
	// the cursor says it.
	CursorTime(cursor string) (time.Time, bool)
	// DefaultPageSize is the page size the poller asks for by default.
	DefaultPageSize() int
}

// clients are the polling API clients, by provider name: a provider's
// client is written beside the others in providers.go and keyed here. A
// test fails while a registered provider (pkg/provider) has none, or a
// client has no registered provider.
var clients = map[string]func(*Client) Feed{
	"generic":   func(c *Client) Feed { return &Generic{c: c} },
	"cinescore": func(c *Client) Feed { return &Cinescore{c: c} },
	"reelpulse": func(c *Client) Feed { return &Reelpulse{c: c} },
}

// New returns the feed of the named provider on client.
func New(name string, c *Client) (Feed, error) {
	if mk, ok := clients[name]; ok {
		return mk(c), nil
	}
	return nil, fmt.Errorf("provider %q has no polling API client (known: %v)", name, Known())
}

// Known lists the providers whose polling APIs this package speaks, sorted.
func Known() []string {
	out := make([]string, 0, len(clients))
	for n := range clients {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// PublishedLimit is the provider's published rate limit in requests per
// second (its registration in pkg/provider), the default of
// POLL_RATE_<PROVIDER>; 1 for a provider that is not registered.
func PublishedLimit(name string) float64 {
	if r, ok := provider.Lookup(name); ok {
		return r.RateLimit
	}
	return 1
}

func decode(a Answer, v any, what string) error {
	if err := json.Unmarshal(a.Body, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadAnswer, what, err)
	}
	return nil
}

func pageNo(q Query) int { return max(1, q.Page) }
