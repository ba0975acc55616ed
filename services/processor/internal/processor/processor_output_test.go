package processor

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/schemas"
)

func TestOutputMessage(t *testing.T) {
	p := &Processor{adapters: provider.Default()}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for _, payload := range []string{upsert("r1", 3, 7.5), deleted("r1", 4)} {
		in := rawMessage(t, "generic", "r1", payload, "evt_abc")
		in.Headers = append(in.Headers, kafka.Header{Key: "traceparent", Value: []byte("00-x")})
		r := p.normalizeOne(in, now)
		m, err := outputMessage(&r)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != "generic:r1" {
			t.Errorf("key %q, want the canonical id", m.Key)
		}
		if err := schemas.Validate(schemas.NormalizedEvent, m.Value); err != nil {
			t.Errorf("value does not match the published schema: %v\n%s", err, m.Value)
		}
		var ev review.Event
		if err := json.Unmarshal(m.Value, &ev); err != nil || ev.Review.Version != r.event.Review.Version {
			t.Errorf("value %s: %v", m.Value, err)
		}
		for _, h := range []string{kafkax.HeaderEventID, kafkax.HeaderAccepted, kafkax.HeaderSource} {
			if got, want := envelope.Header(m, h), envelope.Header(in, h); got != want || got == "" {
				t.Errorf("header %s = %q, want %q copied from the raw record", h, got, want)
			}
		}
		if envelope.Header(m, "traceparent") != "" || len(m.Headers) != 3 {
			t.Errorf("headers %v: only event-id, source and accepted-at travel on", m.Headers)
		}
	}

	// A raw record without headers: event-id and accepted-at come from the envelope.
	in := rawMessage(t, "generic", "r1", upsert("r1", 3, 7.5), "evt_abc")
	in.Headers = nil
	r := p.normalizeOne(in, now)
	m, _ := outputMessage(&r)
	if envelope.Header(m, kafkax.HeaderEventID) != "evt_abc" || envelope.Header(m, kafkax.HeaderAccepted) != t0.Format(time.RFC3339Nano) {
		t.Errorf("fallback headers %v", m.Headers)
	}
}

func TestDeadLetterMessage(t *testing.T) {
	p := &Processor{adapters: provider.Default()}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for _, in := range []kafka.Message{
		rawMessage(t, "generic", "r1", `{"type":"review.upserted","data":{"review_id":"r1"}}`, "evt_1"),
		{Topic: "reviews.raw.v1", Key: []byte("generic:r9"), Value: []byte("not json \x01"), Headers: []kafka.Header{{Key: "bin", Value: []byte{0xff}}}},
	} {
		in.Topic, in.Partition, in.Offset = "reviews.raw.v1", 4, 1234
		r := p.normalizeOne(in, now)
		if !r.failed() {
			t.Fatal("record did not fail")
		}
		m, err := deadLetter(&r, now).Message()
		if err != nil {
			t.Fatal(err)
		}
		if err := schemas.Validate(schemas.DeadLetter, m.Value); err != nil {
			t.Errorf("dead letter does not match the published schema: %v\n%s", err, m.Value)
		}
		var dl envelope.DeadLetter
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if string(dl.RecordBytes()) != string(in.Value) {
			t.Errorf("original bytes lost: %q != %q", dl.RecordBytes(), in.Value)
		}
		if dl.Stage != envelope.StageProcessor || dl.Reason != r.reason || dl.Error == "" || !dl.FailedAt.Equal(now) {
			t.Errorf("dead letter %+v", dl)
		}
		if dl.Topic != "reviews.raw.v1" || dl.Partition == nil || *dl.Partition != 4 || dl.Offset == nil || *dl.Offset != 1234 {
			t.Errorf("location %s/%v/%v", dl.Topic, dl.Partition, dl.Offset)
		}
		if string(m.Key) != string(in.Key) || dl.Key != string(in.Key) {
			t.Errorf("key %q, want the failed record's %q", m.Key, in.Key)
		}
		if _, ok := dl.Headers["bin"]; ok {
			t.Error("a binary header was copied into the JSON dead letter")
		}
		if len(in.Headers) > 1 && dl.Headers[kafkax.HeaderEventID] != "evt_1" {
			t.Errorf("headers %v", dl.Headers)
		}
	}
}

// A generation's writers close within the group's rebalance timeout even
// when every produce request times out: kafka-go tries a batch
// outputAttempts times, each bounded by outputWriteTimeout, with at most
// 500ms of backoff between (kafkax.NewWriter), so the next owner's restore
// never starts while this worker can still write (Processor.Run).
func TestOutputWritersCloseWithinTheRebalanceTimeout(t *testing.T) {
	worst := outputAttempts*outputWriteTimeout + (outputAttempts-1)*500*time.Millisecond
	if worst >= kafkax.RebalanceTimeout {
		t.Fatalf("a generation's writers may take %v to close, not under the rebalance timeout of %v", worst, kafkax.RebalanceTimeout)
	}
	w, closeWriters := NewWriters([]string{"127.0.0.1:9"}, kafkax.Names{})
	defer closeWriters()
	for name, wr := range map[string]Writer{"normalized": w.Normalized, "dlq": w.DLQ, "changelog": w.Changelog} {
		kw := wr.(*kafkax.EagerWriter).Writer()
		if kw.WriteTimeout != outputWriteTimeout || kw.MaxAttempts != outputAttempts || kw.WriteBackoffMax > 500*time.Millisecond {
			t.Errorf("%s writer: write timeout %v, %d attempts, backoff up to %v; want %v, %d, at most 500ms",
				name, kw.WriteTimeout, kw.MaxAttempts, kw.WriteBackoffMax, outputWriteTimeout, outputAttempts)
		}
	}
}
