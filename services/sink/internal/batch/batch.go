// Package batch turns a batch of reviews.normalized.v1 records into the
// changes the sink writes: it decodes and checks each record, and collapses
// several changes of one review id to the one that wins.
//
// The winner is the greatest change in the processor's total order
// (dedupe.Entry.Compare): the higher version, then a delete over an upsert
// of the same version, then the greater content hash. The store's upsert
// guard applies the same order across batches, so the stored row per id is
// the greatest change ever seen, whatever the arrival order.
//
// The package does no I/O; it is pure and safe for concurrent use.
package batch

import (
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Write is one decoded normalized event, ready to write.
type Write struct {
	// Offset is the record's offset in its partition.
	Offset int64
	Review review.Review
	// Deleted marks a delete: the row becomes a hidden tombstone that
	// keeps its version.
	Deleted bool
	// Hash is review.ContentHash of the event.
	Hash string
	// AcceptedAt is the record's accepted-at header (zero when absent).
	AcceptedAt time.Time
	// EventID is the record's event-id header, for logs.
	EventID string
	// Repair marks a change that reconciliation sent.
	Repair bool
}

// Entry is the change's place in the processor's total order.
func (c Write) Entry() dedupe.Entry {
	return dedupe.Entry{Version: c.Review.Version, Hash: dedupe.HashOf(c.Hash), Deleted: c.Deleted, Offset: c.Offset}
}

// Op returns the change's operation.
func (c Write) Op() review.Op {
	if c.Deleted {
		return review.OpDelete
	}
	return review.OpUpsert
}

// Reasons a record is refused (dead-lettered); bounded, for metrics.
const (
	ReasonNotJSON      = "not_json"
	ReasonInvalidEvent = "invalid_event"
	ReasonKeyMismatch  = "key_mismatch"
	ReasonFieldTooLong = string(review.ReasonFieldTooLong)
)

// InvalidError is a permanent problem with one record: retrying cannot fix
// it, so the record is dead-lettered and the offset moves on.
type InvalidError struct {
	Reason string
	Err    error
}

func (e *InvalidError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

func invalid(reason, format string, args ...any) error {
	return &InvalidError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Decode decodes and checks one reviews.normalized.v1 record. now fills a
// missing ingested_at. The error is an *InvalidError.
func Decode(m kafka.Message, now time.Time) (Write, error) {
	var ev review.Event
	if err := jsonx.Unmarshal(m.Value, &ev); err != nil {
		return Write{}, invalid(ReasonNotJSON, "value is not a normalized event: %v", err)
	}
	r := ev.Review
	if err := check(ev); err != nil {
		return Write{}, err
	}
	if key := string(m.Key); key != r.ID {
		return Write{}, invalid(ReasonKeyMismatch, "record key %q is not the review id %q", key, r.ID)
	}
	if r.IngestedAt.IsZero() {
		r.IngestedAt = now
	}
	if r.SourceUpdatedAt.IsZero() {
		// Only deletes get here (check refuses such upserts); their time
		// is shown nowhere.
		r.SourceUpdatedAt = r.IngestedAt
	}
	c := Write{
		Offset:  m.Offset,
		Review:  r,
		Deleted: ev.Op == review.OpDelete,
		Hash:    review.ContentHash(ev.Op, ev.Review),
		EventID: envelope.Header(m, kafkax.HeaderEventID),
		Repair:  ev.Repair,
	}
	if h := envelope.Header(m, kafkax.HeaderAccepted); h != "" {
		if t, err := time.Parse(time.RFC3339Nano, h); err == nil {
			c.AcceptedAt = t
		}
	}
	if c.Deleted {
		// A tombstone keeps no content: only what identifies it.
		c.Review = review.Review{ID: r.ID, Provider: r.Provider, ExternalID: r.ExternalID, MovieID: r.MovieID,
			Version: r.Version, SourceUpdatedAt: r.SourceUpdatedAt, IngestedAt: r.IngestedAt}
	}
	return c, nil
}

// check enforces the model's rules (review.Validate), which hold what the
// store's columns need, so that one bad record is dead-lettered instead of
// failing its whole batch's transaction forever. A field over its limit
// keeps its reason (field_too_long); any other refusal is invalid_event.
func check(ev review.Event) error {
	err := review.Validate(ev)
	if err == nil {
		return nil
	}
	reason := ReasonInvalidEvent
	if review.ReasonOf(err) == review.ReasonFieldTooLong {
		reason = ReasonFieldTooLong
	}
	return &InvalidError{Reason: reason, Err: fmt.Errorf("review %q: %w", ev.Review.ID, err)}
}

// Collapse keeps, per review id, the greatest change (dedupe order) and
// returns them in the order of their first appearance, with the number of
// changes that lost to another of the same id. in is not modified.
func Collapse(in []Write) (out []Write, superseded int) {
	index := make(map[string]int, len(in))
	out = make([]Write, 0, len(in))
	for _, c := range in {
		i, seen := index[c.Review.ID]
		if !seen {
			index[c.Review.ID] = len(out)
			out = append(out, c)
			continue
		}
		superseded++
		if c.Entry().Compare(out[i].Entry()) > 0 {
			out[i] = c
		}
	}
	return out, superseded
}

// ReasonOf returns the reason of an *InvalidError, or "".
func ReasonOf(err error) string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return ""
}
