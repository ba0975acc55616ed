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
	"unicode/utf8"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// RawEvent is one provider event, a change of one review, cut out of a
// webhook delivery or an API page with its bytes untouched.
type RawEvent struct {
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
	// Split cuts a webhook delivery body into its events. An error is
	// permanent (*Error): the body is not JSON or has no known event shape.
	Split(body []byte) ([]RawEvent, error)
	// Normalize turns one change's payload into a normalized event. An
	// error is permanent (*Error) and says which field is wrong.
	Normalize(payload []byte, ingestedAt time.Time) (review.Event, error)
}

// Reason classifies a permanent payload error; it is the dead-letter
// reason. It is the shared model's vocabulary (review.Reason), with the
// adapters' own reasons below.
type Reason = review.Reason

// The reasons a payload is refused.
const (
	ReasonNotJSON       Reason = "not_json"
	ReasonUnknownShape  Reason = "unknown_shape"
	ReasonInvalidField         = review.ReasonInvalidField
	ReasonFieldTooLong         = review.ReasonFieldTooLong
	ReasonTooLarge             = review.ReasonTooLarge
	ReasonTooManyEvents Reason = "too_many_events"
	ReasonUnknownProv   Reason = "unknown_provider"
)

// Error is a permanent payload error: retrying the same bytes fails again.
type Error = review.Error

// Errorf builds a permanent *Error.
func Errorf(reason Reason, format string, args ...any) error {
	return review.Errorf(reason, format, args...)
}

// ReasonOf returns the Reason of a permanent error, or "" for any other error.
func ReasonOf(err error) Reason { return review.ReasonOf(err) }

// refusesDelivery reports whether an event's error refuses its whole
// delivery at the receiver (400). A field over its limit does not: the
// event goes on to the processor, which dead-letters it alone
// (field_too_long) while the others of its delivery are stored.
func refusesDelivery(err error) bool {
	return err != nil && ReasonOf(err) != ReasonFieldTooLong
}

// MaxEventsPerDelivery bounds the events of one delivery (docs/contract.md §2).
const MaxEventsPerDelivery = 500

// MaxBodyChars bounds a review body: at most 100 KB (review.MaxBodyBytes).
const MaxBodyChars = review.MaxBodyBytes

// sentTexts are a review's texts as the provider sent them, before
// review.CleanText: the limits apply to what was sent.
type sentTexts struct{ author, title, url, body string }

// checked is the last step of every adapter's Normalize: the field limits
// on the review id, the texts as sent and the movie's title, then the
// model's own Validate. On a field over its limit the event is returned
// beside the error, so Split still knows the review's id and lets the
// event through to be dead-lettered alone.
func checked(ev review.Event, movieTitle string, sent sentTexts) (review.Event, error) {
	if err := review.CheckLimits(ev.Review.ExternalID, sent.author, sent.title, sent.url, sent.body); err != nil {
		return ev, err
	}
	if err := review.CheckChars("movie title", movieTitle, review.MaxMovieTitleChars); err != nil {
		return ev, err
	}
	return ev, review.Validate(ev)
}

// checkJSON refuses what is not JSON text: bytes that are not UTF-8 (JSON
// text is UTF-8, RFC 8259 §8.1; decoding would turn them into U+FFFD and
// store what the provider did not write), or not valid JSON.
func checkJSON(b []byte, what string) error {
	if !utf8.Valid(b) {
		return errNotUTF8(what)
	}
	if !jsonx.Valid(b) {
		return Errorf(ReasonNotJSON, "%s is not valid JSON", what)
	}
	return nil
}

func errNotUTF8(what string) error {
	return Errorf(ReasonNotJSON, "%s is not UTF-8: JSON text must be UTF-8 (RFC 8259), and a Latin-1 or other encoding would be misread", what)
}
