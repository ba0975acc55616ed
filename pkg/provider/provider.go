// Package provider holds one adapter per review provider: how its webhook
// deliveries split into per-review events, and how one event's payload becomes
// a canonical review. The receiver, the poller, the processor and
// reconciliation all use these adapters, so push, pull and replay agree on
// keys and versions.
//
// A provider's polling API lists changes in the same per-event shape its
// webhooks send, so a poll and a webhook of one change give byte-identical
// normalization.
package provider

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Change is one review change cut out of a delivery or an API page.
type Change struct {
	// ReviewID is the provider's stable id of the review.
	ReviewID string
	// Payload is the event's JSON exactly as the provider sent it.
	Payload []byte
}

// Adapter translates one provider's payloads. Implementations are stateless
// and safe for concurrent use.
type Adapter interface {
	// Name is the provider's name in URLs, keys and ids ("generic").
	Name() string
	// Split cuts a webhook delivery body into its changes. An error is
	// permanent (*Error): the body is not JSON or has no known event shape.
	Split(body []byte) ([]Change, error)
	// Normalize turns one change's payload into a normalized event. An
	// error is permanent (*Error) and says which field is wrong.
	Normalize(payload []byte, ingestedAt time.Time) (review.Event, error)
}

// Reason classifies a permanent payload error; it is the dead-letter reason.
type Reason string

// The reasons a payload is refused.
const (
	ReasonNotJSON       Reason = "not_json"
	ReasonUnknownShape  Reason = "unknown_shape"
	ReasonInvalidField  Reason = "invalid_field"
	ReasonTooManyEvents Reason = "too_many_events"
	ReasonUnknownProv   Reason = "unknown_provider"
)

// Error is a permanent payload error: retrying the same bytes fails again.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Msg }

// Errorf builds a permanent *Error.
func Errorf(reason Reason, format string, args ...any) error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the Reason of a permanent error, or "" for any other error.
func ReasonOf(err error) Reason {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
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

// MaxEventsPerDelivery bounds the events of one delivery (CONTRACT §2).
const MaxEventsPerDelivery = 500

// MaxBodyChars bounds a review body (CONTRACT §2: at most 100 KB).
const MaxBodyChars = 100 * 1024

// Default returns the registry of every provider reviewpipe knows.
func Default() *Registry {
	return NewRegistry(Generic{}, Cinescore{}, Reelpulse{})
}
