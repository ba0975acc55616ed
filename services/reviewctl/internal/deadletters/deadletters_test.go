package deadletters

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

var now = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func deadLetter(stage envelope.Stage, reason, key string, record []byte) envelope.DeadLetter {
	dl := envelope.NewDeadLetter(stage, reason, errors.New(reason), key, record, now)
	dl.Provider = "generic"
	return dl
}

func TestOrigin(t *testing.T) {
	raw := testlog.RawMessage("o", 1, false, "x", "evt_o")
	for _, c := range []struct {
		name string
		dl   envelope.DeadLetter
		want kafkax.Topic
	}{
		{"read from the raw topic", envelope.DeadLetter{Topic: "ns.reviews.raw.v1", Stage: envelope.StageSink}, kafkax.TopicRaw},
		{"read from the normalized topic", envelope.DeadLetter{Topic: "reviews.normalized.v1"}, kafkax.TopicNormalized},
		{"processor", envelope.DeadLetter{Stage: envelope.StageProcessor}, kafkax.TopicRaw},
		{"sink", envelope.DeadLetter{Stage: envelope.StageSink}, kafkax.TopicNormalized},
		{"poller, a raw envelope", deadLetter(envelope.StagePoller, "r", "", raw.Value), kafkax.TopicRaw},
		{"poller, a provider page", deadLetter(envelope.StagePoller, "r", "", []byte(`{"page":1}`)), ""},
		{"receiver", envelope.DeadLetter{Stage: envelope.StageReceiver}, ""},
	} {
		if got := Origin(c.dl); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	early, late := now.Add(-time.Hour), now.Add(time.Hour)
	d := DeadLetter{DeadLetter: deadLetter(envelope.StageSink, "constraint", "generic:a", []byte("{}"))}
	bad := DeadLetter{Bad: errors.New("not a dead letter")}
	for _, c := range []struct {
		name string
		f    Filter
		d    DeadLetter
		want bool
	}{
		{"empty", Filter{}, d, true},
		{"reason", Filter{Reasons: []string{"x", "constraint"}}, d, true},
		{"other reason", Filter{Reasons: []string{"not_json"}}, d, false},
		{"stage", Filter{Stages: []string{"receiver"}}, d, false},
		{"provider", Filter{Providers: []string{"generic"}}, d, true},
		{"id", Filter{IDs: []string{d.ID}}, d, true},
		{"failed since", Filter{Since: &early}, d, true},
		{"failed before", Filter{Since: &late}, d, false},
		{"unreadable, empty filter", Filter{}, bad, true},
		{"unreadable, any selection", Filter{Reasons: []string{"constraint"}}, bad, false},
	} {
		if got := c.f.Match(c.d); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestPlanRedrive(t *testing.T) {
	reg := provider.Default()
	raw := testlog.RawMessage("p", 2, false, "fine", "evt_p")
	rawBad := testlog.RawMessage("p", 1, false, "x", "evt_bad")
	rawBad.Value = bytes.Replace(rawBad.Value, []byte(`"version":1`), []byte(`"version":0`), 1)
	rating := 80
	ev := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:n", Provider: "generic", ExternalID: "n",
		MovieID: "tt0111161", Author: "a", Rating: &rating, Version: 3, SourceUpdatedAt: testlog.T0, IngestedAt: testlog.T0}}
	evBytes, _ := ev.Marshal()
	body := testlog.GenericPayload("w", 1, false, "webhook body")
	webhook := deadLetter(envelope.StageReceiver, "unknown_shape", "generic:webhook:msg_w", body)
	webhook.Headers = map[string]string{"webhook-id": "msg_w"}
	for _, c := range []struct {
		name    string
		dl      envelope.DeadLetter
		target  kafkax.Topic
		records int
		reason  string // set: still invalid with this reason
	}{
		{"raw, valid now", deadLetter(envelope.StageProcessor, "invalid_field", "generic:p", raw.Value), kafkax.TopicRaw, 1, ""},
		{"raw, still invalid", deadLetter(envelope.StageProcessor, "invalid_field", "generic:p", rawBad.Value), kafkax.TopicRaw, 0, "invalid_field"},
		{"raw, key of another review", deadLetter(envelope.StageProcessor, "x", "generic:other", raw.Value), kafkax.TopicRaw, 0, "key_mismatch"},
		{"normalized, valid", deadLetter(envelope.StageSink, "constraint", "generic:n", evBytes), kafkax.TopicNormalized, 1, ""},
		{"normalized, key mismatch", deadLetter(envelope.StageSink, "constraint", "generic:zz", evBytes), kafkax.TopicNormalized, 0, "key_mismatch"},
		{"normalized, not JSON", deadLetter(envelope.StageSink, "not_json", "generic:n", []byte("{")), kafkax.TopicNormalized, 0, "not_json"},
		{"webhook body", webhook, kafkax.TopicRaw, 1, ""},
		{"webhook body, not JSON", deadLetter(envelope.StageReceiver, "not_json", "k", []byte("{oops")), kafkax.TopicRaw, 0, "*"},
	} {
		p := PlanRedrive(c.dl, reg)
		if c.reason != "" {
			if p.Invalid == nil || (c.reason != "*" && p.InvalidReason != c.reason) || len(p.Messages) != 0 {
				t.Errorf("%s: invalid %v (%s), %d records; want still invalid with %s", c.name, p.Invalid, p.InvalidReason, len(p.Messages), c.reason)
			}
			continue
		}
		if p.Invalid != nil || p.Target != c.target || len(p.Messages) != c.records || len(p.EventIDs) != c.records {
			t.Errorf("%s: invalid %v, target %q, %d records, event ids %v", c.name, p.Invalid, p.Target, len(p.Messages), p.EventIDs)
			continue
		}
		for _, m := range p.Messages {
			if envelope.Header(m, kafkax.HeaderRedriveOf) != c.dl.ID || (c.target == kafkax.TopicRaw && envelope.Header(m, kafkax.HeaderEventID) == "") {
				t.Errorf("%s: headers %v", c.name, m.Headers)
			}
		}
	}
}

// memDLQ is reviews.dlq.v1 in memory, one partition.
type memDLQ struct{ msgs []kafka.Message }

func (l *memDLQ) Snapshot(context.Context, time.Time, time.Time) (kafkalog.Spans, error) {
	return kafkalog.Spans{{Partition: 0, To: int64(len(l.msgs))}}, nil
}

func (l *memDLQ) Scan(_ context.Context, _ kafkalog.Spans, fn func(*kafka.Message) error) error {
	for i := range l.msgs {
		m := l.msgs[i]
		m.Offset = int64(i)
		if err := fn(&m); err != nil {
			return err
		}
	}
	return nil
}

// memLedger is dlq_redrives in memory; it also counts the records sent.
type memLedger struct {
	rows map[string]Redrive
	sent map[kafkax.Topic]int
}

func (l *memLedger) Lock(context.Context) (func(), error) { return func() {}, nil }

func (l *memLedger) Redrives(_ context.Context, ids []string) (map[string]Redrive, error) {
	out := map[string]Redrive{}
	for _, id := range ids {
		if r, ok := l.rows[id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

func (l *memLedger) Record(_ context.Context, p Plan, topic, by string) error {
	l.rows[p.DeadLetter.ID] = Redrive{At: now, Topic: topic, Records: len(p.Messages), By: by}
	return nil
}

func (l *memLedger) Write(_ context.Context, topic kafkax.Topic, msgs ...kafka.Message) error {
	l.sent[topic] += len(msgs)
	return nil
}

func TestRedriver(t *testing.T) {
	raw := testlog.RawMessage("r", 1, false, "ok", "evt_r")
	good := deadLetter(envelope.StageProcessor, "invalid_field", "generic:r", raw.Value)
	bad := deadLetter(envelope.StageReceiver, "not_json", "k", []byte("{oops"))
	log := &memDLQ{}
	for _, dl := range []envelope.DeadLetter{good, bad, good} {
		m, err := dl.Message()
		if err != nil {
			t.Fatal(err)
		}
		log.msgs = append(log.msgs, m)
	}
	log.msgs = append(log.msgs, kafka.Message{Value: []byte("junk")})
	led := &memLedger{rows: map[string]Redrive{}, sent: map[kafkax.Topic]int{}}
	rd := &Redriver{Log: log, Ledger: led, Sender: led, Providers: provider.Default(), Operator: "test"}

	run := func(f Filter, dryRun bool) Report {
		t.Helper()
		b, err := rd.Prepare(context.Background(), f, dryRun)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Release()
		if err := rd.Send(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		return b.Report
	}
	rep := run(Filter{}, true)
	if rep.Matched != 2 || len(rep.Redriven) != 1 || len(rep.Invalid) != 1 || len(rep.Unreadable) != 1 || len(led.sent) != 0 {
		t.Fatalf("dry run: %+v, sent %v", rep, led.sent)
	}
	rep = run(Filter{}, false)
	if len(rep.Redriven) != 1 || rep.Redriven[0].ID != good.ID || led.sent[kafkax.TopicRaw] != 1 || led.rows[good.ID].By != "test" {
		t.Fatalf("redrive: %+v, sent %v", rep, led.sent)
	}
	rep = run(Filter{Reasons: []string{"invalid_field"}}, false)
	if rep.Matched != 1 || len(rep.Redriven) != 0 || len(rep.AlreadyRedriven) != 1 || led.sent[kafkax.TopicRaw] != 1 {
		t.Fatalf("second redrive: %+v, sent %v", rep, led.sent)
	}
}
