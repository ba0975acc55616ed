package processor

import (
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
// They are provider.NormalizeRecord's, shared with reconciliation.
const (
	ReasonInvalidEnvelope = string(provider.ReasonInvalidEnvelope)
	ReasonUnknownProvider = string(provider.ReasonUnknownProv)
	ReasonKeyMismatch     = string(provider.ReasonKeyMismatch)
	ReasonInvalidPayload  = string(provider.ReasonInvalidPayload)
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
	n := p.adapters.NormalizeRecord(m.Key, m.Value, now)
	r := record{msg: m, provider: providerUnknown, raw: n.Raw, event: n.Event}
	if n.Provider != "" {
		r.provider = n.Provider
	}
	if n.Raw.EventID != "" {
		r.acceptedAt = acceptedAt(m, n.Raw)
	}
	if n.Err != nil {
		r.event = review.Event{}
		r.fail(string(n.Reason), n.Err)
	}
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
