package deadletters

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// Plan is what redriving one dead letter sends, or why it cannot.
type Plan struct {
	DeadLetter envelope.DeadLetter
	// Target is the topic the records go to.
	Target   kafkax.Topic
	Messages []kafka.Message
	EventIDs []string
	// Invalid is set when the record is still invalid: nothing is sent.
	// InvalidReason is the reason the pipeline would dead-letter it with.
	Invalid       error
	InvalidReason string
}

// Origin decides where a dead letter's record came from: the topic it was
// read from when it came from Kafka, else by stage (the receiver and the
// poller dead-letter provider bodies, the processor raw envelopes, the sink
// normalized events).
func Origin(dl envelope.DeadLetter) kafkax.Topic {
	switch {
	case strings.HasSuffix(dl.Topic, string(kafkax.TopicRaw)):
		return kafkax.TopicRaw
	case strings.HasSuffix(dl.Topic, string(kafkax.TopicNormalized)):
		return kafkax.TopicNormalized
	}
	switch dl.Stage {
	case envelope.StageProcessor:
		return kafkax.TopicRaw
	case envelope.StageSink:
		return kafkax.TopicNormalized
	case envelope.StagePoller:
		if _, err := envelope.ParseRaw(dl.RecordBytes()); err == nil {
			return kafkax.TopicRaw
		}
	}
	return "" // a provider body, to be split into raw events
}

// PlanRedrive checks a dead letter's record again with today's code (the
// provider adapters, the canonical model's rules) and builds the records
// that redriving it sends:
//
//   - a raw envelope (processor stage) goes back to reviews.raw.v1 untouched,
//     with its original key and headers;
//   - a normalized event (sink stage) goes back to reviews.normalized.v1
//     untouched, keyed by its review id;
//   - a provider body (receiver or poller stage) is split by the provider's
//     adapter into raw envelopes, as the receiver would have written them had
//     the body been valid: source webhook (receiver) or poll (poller), the
//     event ids the receiver derives from the webhook-id, received_at and
//     accepted-at the time the body was first refused. It is not `replay`:
//     these changes never reached the raw log before.
//
// Every record carries the header redrive-of: <dead letter id>.
func PlanRedrive(dl envelope.DeadLetter, reg *provider.Registry) Plan {
	origin := Origin(dl)
	p := Plan{DeadLetter: dl, Target: origin}
	var reason string
	var err error
	switch p.Target {
	case kafkax.TopicRaw:
		p.Messages, reason, err = planRaw(dl, reg)
	case kafkax.TopicNormalized:
		p.Messages, reason, err = planNormalized(dl, reg)
	default:
		p.Target = kafkax.TopicRaw
		p.Messages, p.EventIDs, reason, err = planBody(dl, reg)
	}
	if err != nil {
		if r := provider.ReasonOf(err); r != "" {
			reason = string(r)
		}
		p.Invalid, p.InvalidReason, p.Messages, p.EventIDs = err, reason, nil, nil
		return p
	}
	redriveHdr := kafka.Header{Key: kafkax.HeaderRedriveOf, Value: []byte(dl.ID)}
	for i := range p.Messages {
		p.Messages[i].Headers = append(p.Messages[i].Headers, redriveHdr)
	}
	if origin != "" {
		// One record, sent as it was: its own event id.
		p.EventIDs = []string{envelope.Header(p.Messages[0], kafkax.HeaderEventID)}
	}
	return p
}

// planRaw plans a raw envelope: back to reviews.raw.v1 untouched, with its
// key and headers, if the processor's own rule takes it now. On an error,
// reason is the one the processor would dead-letter it with.
func planRaw(dl envelope.DeadLetter, reg *provider.Registry) (msgs []kafka.Message, reason string, err error) {
	body := dl.RecordBytes()
	key := dl.Key
	if key == "" {
		// Unkeyed (a poller's event the adapter refused): the key the
		// review names, checked below like any other.
		if raw, err := envelope.ParseRaw(body); err == nil {
			if ad, ok := reg.Get(raw.Provider); ok {
				if ev, err := ad.Normalize(raw.Payload, raw.ReceivedAt); err == nil {
					key = ev.Review.ID
				}
			}
		}
	}
	// The processor's own rule, so redrive sends only what it takes.
	n := reg.NormalizeRecord([]byte(key), body, dl.FailedAt)
	if n.Err != nil {
		return nil, string(n.Reason), n.Err
	}
	hdrs := headersOf(dl.Headers)
	setDefaultHeader(&hdrs, kafkax.HeaderEventID, n.Raw.EventID)
	setDefaultHeader(&hdrs, kafkax.HeaderSource, string(n.Raw.Source))
	setDefaultHeader(&hdrs, kafkax.HeaderAccepted, n.Raw.ReceivedAt.UTC().Format(time.RFC3339Nano))
	return []kafka.Message{{Key: []byte(key), Value: body, Headers: hdrs}}, "", nil
}

// planNormalized plans a normalized event: back to reviews.normalized.v1
// untouched, keyed by its review id, if the model's check passes now.
func planNormalized(dl envelope.DeadLetter, reg *provider.Registry) (msgs []kafka.Message, reason string, err error) {
	body := dl.RecordBytes()
	var ev review.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return nil, string(provider.ReasonNotJSON), fmt.Errorf("not a normalized event: %v", err)
	}
	if err := validateEvent(ev, reg); err != nil {
		return nil, string(provider.ReasonInvalidField), err
	}
	key := dl.Key
	if key == "" {
		key = ev.Review.ID
	}
	if key != ev.Review.ID {
		return nil, "key_mismatch", fmt.Errorf("record key %q is not the review id %q", key, ev.Review.ID)
	}
	return []kafka.Message{{Key: []byte(key), Value: body, Headers: headersOf(dl.Headers)}}, "", nil
}

// planBody plans a provider body: split by the provider's adapter into the
// raw envelopes the receiver (or poller) would have written.
func planBody(dl envelope.DeadLetter, reg *provider.Registry) (msgs []kafka.Message, eventIDs []string, reason string, err error) {
	name := dl.Provider
	if name == "" {
		name, _, _ = strings.Cut(dl.Key, ":")
	}
	delivery := dl.Headers["webhook-id"]
	if delivery == "" {
		delivery = dl.ID
	}
	src := envelope.SourceWebhook
	if dl.Stage == envelope.StagePoller {
		src = envelope.SourcePoll
	}
	d, err := reg.SplitDelivery(name, delivery, src, dl.RecordBytes(), dl.FailedAt)
	if err != nil {
		return nil, nil, string(provider.ReasonUnknownShape), err
	}
	return d.Messages, d.EventIDs, "", nil
}

// validateEvent checks a normalized event with the model's one check
// (review.Validate, as the sink does), and that its provider is known.
func validateEvent(ev review.Event, reg *provider.Registry) error {
	if err := review.Validate(ev); err != nil {
		return err
	}
	if _, ok := reg.Get(ev.Review.Provider); !ok {
		return fmt.Errorf("provider %q has no adapter", ev.Review.Provider)
	}
	return nil
}

func headersOf(m map[string]string) []kafka.Header {
	out := make([]kafka.Header, 0, len(m)+2)
	for _, k := range []string{kafkax.HeaderEventID, kafkax.HeaderSource, kafkax.HeaderAccepted, kafkax.HeaderRepair} {
		if v, ok := m[k]; ok {
			out = append(out, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	return out
}

func setDefaultHeader(hs *[]kafka.Header, key, value string) {
	for _, h := range *hs {
		if h.Key == key {
			return
		}
	}
	*hs = append(*hs, kafka.Header{Key: key, Value: []byte(value)})
}
