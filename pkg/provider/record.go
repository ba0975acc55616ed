package provider

import (
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

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

// Delivery is a delivery body cut into the raw records it becomes.
type Delivery struct {
	// Messages are the reviews.raw.v1 records, one per event, in the
	// body's order.
	Messages []kafka.Message
	// EventIDs are their event ids, index for index.
	EventIDs []string
}

// SplitDelivery cuts a delivery body of provider name into its
// reviews.raw.v1 records, as the receiver writes them: the adapter's Split,
// then one raw envelope per event with its payload's bytes untouched, the
// event id derived from the delivery id and the event's index (so a
// redelivery yields the same ids), keyed {provider}:{review_id}. It is the
// one splitter of the receiver and of `reviewctl dlq redrive`, so a redriven
// body becomes what the receiver would have written. The error is the
// adapter's permanent *Error (its reason is the dead-letter reason), or
// ReasonUnknownProv.
func (r *Registry) SplitDelivery(name, deliveryID string, source envelope.Source, body []byte, accepted time.Time) (Delivery, error) {
	adapter, ok := r.Get(name)
	if !ok {
		return Delivery{}, Errorf(ReasonUnknownProv, "no adapter for provider %q (known: %v)", name, r.Names())
	}
	events, err := adapter.Split(body)
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{Messages: make([]kafka.Message, len(events)), EventIDs: make([]string, len(events))}
	for i, c := range events {
		raw := envelope.Raw{
			EventID:    envelope.EventID(name, deliveryID, i),
			Provider:   name,
			Source:     source,
			ReceivedAt: accepted.UTC(),
			DeliveryID: deliveryID,
			Payload:    c.Payload,
		}
		if d.Messages[i], err = raw.Message(c.ReviewID, accepted); err != nil {
			return Delivery{}, err
		}
		d.EventIDs[i] = raw.EventID
	}
	return d, nil
}
