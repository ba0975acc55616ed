package envelope

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// Message turns a raw envelope into its reviews.raw.v1 record, keyed
// "{provider}:{review_id}", with the event id, source and acceptance time
// as headers. The payload must be valid JSON (every adapter's Split and
// poll page hands out slices of a body it has decoded); it is copied as it
// is, not re-validated and compacted as json.Marshal would, which cost 15%
// of the receiver's CPU with 10-review deliveries.
func (r Raw) Message(reviewID string, acceptedAt time.Time) (kafka.Message, error) {
	b, err := r.encode()
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode raw envelope: %w", err)
	}
	return kafka.Message{
		Key:   []byte(r.Provider + ":" + reviewID),
		Value: b,
		Headers: []kafka.Header{
			{Key: kafkax.HeaderEventID, Value: []byte(r.EventID)},
			{Key: kafkax.HeaderSource, Value: []byte(r.Source)},
			{Key: kafkax.HeaderAccepted, Value: []byte(acceptedAt.UTC().Format(time.RFC3339Nano))},
		},
	}, nil
}

// encode is json.Marshal(r) with the payload spliced in unchanged.
func (r Raw) encode() ([]byte, error) {
	type head struct {
		EventID    string    `json:"event_id"`
		Provider   string    `json:"provider"`
		Source     Source    `json:"source"`
		ReceivedAt time.Time `json:"received_at"`
		DeliveryID string    `json:"delivery_id"`
	}
	b, err := jsonx.Marshal(head{r.EventID, r.Provider, r.Source, r.ReceivedAt, r.DeliveryID})
	if err != nil {
		return nil, err
	}
	payload := []byte(r.Payload)
	if len(payload) == 0 {
		payload = []byte("null")
	}
	out := make([]byte, 0, len(b)+len(`,"payload":`)+len(payload))
	out = append(out, b[:len(b)-1]...) // without the closing brace
	out = append(out, `,"payload":`...)
	out = append(out, payload...)
	return append(out, '}'), nil
}

// Message turns a dead letter into its reviews.dlq.v1 record. The record
// is spliced in as it is: json.Marshal would compact JSON records, and the
// dead letter must keep their bytes exactly.
func (d DeadLetter) Message() (kafka.Message, error) {
	b, err := d.Encode()
	if err != nil {
		return kafka.Message{}, err
	}
	return kafka.Message{Key: []byte(d.Key), Value: b, Headers: []kafka.Header{
		{Key: "stage", Value: []byte(d.Stage)}, {Key: "reason", Value: []byte(d.Reason)},
	}}, nil
}

// DeadLetterOf builds the dead letter of a record read from Kafka: the
// record's bytes and key, where it was read (topic, partition, offset), and
// its headers that are text. provider is the record's provider when known
// ("" takes the part of the key before its first colon).
func DeadLetterOf(stage Stage, reason string, err error, m kafka.Message, provider string, now time.Time) DeadLetter {
	dl := NewDeadLetter(stage, reason, err, string(m.Key), m.Value, now)
	if provider == "" {
		provider, _, _ = strings.Cut(string(m.Key), ":")
	}
	dl.Provider = provider
	if m.Topic != "" {
		partition, offset := m.Partition, m.Offset
		dl.Topic, dl.Partition, dl.Offset = m.Topic, &partition, &offset
	}
	for _, h := range m.Headers {
		if !utf8.Valid(h.Value) {
			continue
		}
		if dl.Headers == nil {
			dl.Headers = map[string]string{}
		}
		dl.Headers[h.Key] = string(h.Value)
	}
	return dl
}

// Encode returns the dead letter's JSON with Record's bytes unchanged (a
// cold path: encoding/json).
func (d DeadLetter) Encode() ([]byte, error) {
	record := d.Record
	if len(record) == 0 {
		record = json.RawMessage("null")
	}
	d.Record = nil
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	out := make([]byte, 0, len(b)+len(`,"record":`)+len(record))
	out = append(out, b[:len(b)-1]...) // without the closing brace
	out = append(out, `,"record":`...)
	out = append(out, record...)
	return append(out, '}'), nil
}

// WriteDeadLetters writes dls to the dead-letter topic with w and returns
// once Kafka acknowledged every one. A dead letter that Kafka refuses as too
// large (only a topic set up by hand with a lower max.message.bytes can) is
// written again without its record, which is then lost but named (key,
// topic, offset, size), so that no stage retries a dead letter forever.
// Other errors are returned, and the caller retries.
func WriteDeadLetters(ctx context.Context, w kafkax.MessageWriter, dls ...DeadLetter) error {
	msgs := make([]kafka.Message, len(dls))
	for i, d := range dls {
		m, err := d.Message()
		if err != nil {
			return err
		}
		msgs[i] = m
	}
	tooLarge, err := kafkax.WriteAll(ctx, w, msgs)
	if err != nil || len(tooLarge) == 0 {
		return err
	}
	stubs := make([]kafka.Message, len(tooLarge))
	for i, j := range tooLarge {
		d := dls[j]
		d.Record, d.RecordBase64, d.RecordEncoding, d.RecordTruncated = nil, nil, RecordBase64, true
		d.Error += " (record not kept: the dead-letter topic refused it as too large; raise its max.message.bytes with reviewctl setup)"
		if stubs[i], err = d.Message(); err != nil {
			return err
		}
	}
	return w.WriteMessages(ctx, stubs...)
}

// Header returns the value of the named header of m, or "".
func Header(m kafka.Message, name string) string {
	for _, h := range m.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}
