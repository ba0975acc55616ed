package provider

import (
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Reasons for refusing a reviews.raw.v1 record as a whole, besides the
// adapters' own payload reasons.
const (
	// ReasonInvalidEnvelope: the record is not a reviews.raw.v1 envelope.
	ReasonInvalidEnvelope Reason = "invalid_envelope"
	// ReasonKeyMismatch: the record's key is not the canonical id of the
	// review its payload names, so it may sit on another partition than
	// the key's state.
	ReasonKeyMismatch Reason = "key_mismatch"
	// ReasonInvalidPayload: the adapter refused the payload without a
	// reason of its own.
	ReasonInvalidPayload Reason = "invalid_payload"
)

// Normalized is the outcome of NormalizeRecord.
type Normalized struct {
	// Raw is the parsed envelope (zero when it did not parse).
	Raw envelope.Raw
	// Provider is the registered provider's name, or "" when unknown.
	Provider string
	// Event is the canonical change when Err is nil.
	Event review.Event
	// Reason and Err describe a permanent failure: the same bytes fail
	// again, so the record belongs on the dead-letter topic.
	Reason Reason
	Err    error
}

// NormalizeRecord turns one reviews.raw.v1 record (key and value) into its
// canonical event. It is the one rule the processor and reconciliation
// share, so that reconciliation re-derives exactly what the processor did.
// Pure: no I/O, safe for concurrent use.
func (r *Registry) NormalizeRecord(key, value []byte, now time.Time) Normalized {
	var n Normalized
	raw, err := envelope.ParseRaw(value)
	if err != nil {
		n.Reason, n.Err = ReasonInvalidEnvelope, err
		return n
	}
	n.Raw = raw
	adapter, ok := r.Get(raw.Provider)
	if !ok {
		n.Reason, n.Err = ReasonUnknownProv, fmt.Errorf("no adapter for provider %q (known: %v)", raw.Provider, r.Names())
		return n
	}
	n.Provider = adapter.Name()
	ev, err := adapter.Normalize(raw.Payload, now)
	if err != nil {
		n.Reason = ReasonOf(err)
		if n.Reason == "" {
			n.Reason = ReasonInvalidPayload
		}
		n.Err = err
		return n
	}
	if string(key) != ev.Review.ID {
		n.Reason, n.Err = ReasonKeyMismatch, fmt.Errorf("record key %q is not the review's canonical id %q", key, ev.Review.ID)
		return n
	}
	n.Event = ev
	return n
}
