package processor

import (
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Dead-letter reasons of the processor, besides the adapters' own
// (provider.Reason: not_json, unknown_shape, invalid_field, ...).
const (
	// ReasonInvalidEnvelope: the record is not a reviews.raw.v1 envelope.
	ReasonInvalidEnvelope = "invalid_envelope"
	// ReasonUnknownProvider: no adapter for the envelope's provider.
	ReasonUnknownProvider = string(provider.ReasonUnknownProv)
	// ReasonKeyMismatch: the record's key is not the canonical id of the
	// review its payload names, so it may sit on another partition than
	// the key's state.
	ReasonKeyMismatch = "key_mismatch"
	// ReasonInvalidPayload: the adapter refused the payload without a
	// reason of its own.
	ReasonInvalidPayload = "invalid_payload"
)

// providerUnknown is the provider label of records whose provider is not
// known: label values stay bounded whatever the input says.
const providerUnknown = "unknown"

// record is one input record on its way through a batch's steps.
type record struct {
	msg kafka.Message
	// provider is the metric label: a registered provider or "unknown".
	provider string
	// raw is the parsed envelope (zero when it did not parse).
	raw envelope.Raw
	// event is the normalized change when the record did not fail.
	event review.Event
	// acceptedAt is when the pipeline first accepted the change (the
	// accepted-at header, else the envelope's received_at).
	acceptedAt time.Time
	// reason and err describe a permanent failure: the record goes to
	// the dead-letter topic.
	reason string
	err    error
	// decision is the dedupe step's verdict.
	decision dedupe.Decision
}

func (r *record) failed() bool { return r.err != nil }

func (r *record) fail(reason string, err error) {
	r.reason, r.err = reason, err
}

// normalize parses each record of the batch into its canonical event, or
// marks it failed with a dead-letter reason. It does no I/O; every failure
// here is permanent (the same bytes fail again).
func (p *Processor) normalize(batch []kafka.Message, now time.Time) []record {
	recs := make([]record, len(batch))
	for i, m := range batch {
		recs[i] = p.normalizeOne(m, now)
	}
	return recs
}

func (p *Processor) normalizeOne(m kafka.Message, now time.Time) record {
	r := record{msg: m, provider: providerUnknown}
	raw, err := envelope.ParseRaw(m.Value)
	if err != nil {
		r.fail(ReasonInvalidEnvelope, err)
		return r
	}
	r.raw = raw
	r.acceptedAt = acceptedAt(m, raw)
	adapter, ok := p.adapters.Get(raw.Provider)
	if !ok {
		r.fail(ReasonUnknownProvider, fmt.Errorf("no adapter for provider %q (known: %v)", raw.Provider, p.adapters.Names()))
		return r
	}
	r.provider = adapter.Name()
	ev, err := adapter.Normalize(raw.Payload, now)
	if err != nil {
		reason := string(provider.ReasonOf(err))
		if reason == "" {
			reason = ReasonInvalidPayload
		}
		r.fail(reason, err)
		return r
	}
	if string(m.Key) != ev.Review.ID {
		r.fail(ReasonKeyMismatch, fmt.Errorf("record key %q is not the review's canonical id %q", m.Key, ev.Review.ID))
		return r
	}
	r.event = ev
	return r
}

// acceptedAt reads the accepted-at header, falling back on the envelope's
// received_at when the header is missing or malformed.
func acceptedAt(m kafka.Message, raw envelope.Raw) time.Time {
	if h := envelope.Header(m, kafkax.HeaderAccepted); h != "" {
		if t, err := time.Parse(time.RFC3339Nano, h); err == nil {
			return t
		}
	}
	return raw.ReceivedAt
}
