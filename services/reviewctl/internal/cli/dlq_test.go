package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/deadletters"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

// buggyGeneric is the generic adapter with a bug: it refuses any payload
// that mentions "needs-fix". Running redrive with it, then with the real
// adapter, plays "the cause was fixed".
type buggyGeneric struct{ provider.Generic }

func (g buggyGeneric) Split(body []byte) ([]provider.RawEvent, error) {
	if bytes.Contains(body, []byte("needs-fix")) {
		return nil, provider.Errorf(provider.ReasonUnknownShape, "this adapter version cannot read it")
	}
	return g.Generic.Split(body)
}

func (g buggyGeneric) Normalize(p []byte, at time.Time) (review.Event, error) {
	if bytes.Contains(p, []byte("needs-fix")) {
		return review.Event{}, provider.Errorf(provider.ReasonInvalidField, "this adapter version cannot read it")
	}
	return g.Generic.Normalize(p, at)
}

func TestDLQListShowRedrive(t *testing.T) {
	st := newStack(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	part, off := 2, int64(17)
	rawTopic := st.Topic(kafkax.TopicRaw)

	// 1. a webhook body that is not JSON: invalid for good (written twice:
	// the same failure again has the same id).
	notJSON := envelope.NewDeadLetter(envelope.StageReceiver, "not_json", errors.New("body is not valid JSON"),
		"generic:webhook:msg_bad", []byte("{oops"), now)
	notJSON.Provider, notJSON.Headers = "generic", map[string]string{"webhook-id": "msg_bad"}
	// 2. a webhook body the receiver's adapter refused then; valid today.
	body := testlog.GenericPayload("dl-2", 1, false, "needs-fix: fine today")
	refused := envelope.NewDeadLetter(envelope.StageReceiver, "unknown_shape", errors.New("unknown_shape: old adapter"),
		"generic:webhook:msg_2", body, now)
	refused.Provider, refused.Headers = "generic", map[string]string{"webhook-id": "msg_2"}
	// 3. a raw record the processor refused then; valid today.
	rawOK := testlog.RawMessage("dl-3", 2, false, "needs-fix: processor fixed", "evt_dl3")
	procFixed := envelope.NewDeadLetter(envelope.StageProcessor, "invalid_field", errors.New("invalid_field: old adapter"),
		string(rawOK.Key), rawOK.Value, now)
	procFixed.Provider, procFixed.Topic, procFixed.Partition, procFixed.Offset = "generic", rawTopic, &part, &off
	procFixed.Headers = map[string]string{}
	for _, h := range rawOK.Headers {
		procFixed.Headers[h.Key] = string(h.Value)
	}
	// 4. a raw record that is still invalid (version 0).
	rawBad := testlog.RawMessage("dl-4", 1, false, "x", "evt_dl4")
	rawBad.Value = bytes.Replace(rawBad.Value, []byte(`"version":1`), []byte(`"version":0`), 1)
	procBad := envelope.NewDeadLetter(envelope.StageProcessor, "invalid_field", errors.New("invalid_field: data.version"),
		string(rawBad.Key), rawBad.Value, now)
	procBad.Provider, procBad.Topic = "generic", rawTopic
	// 5. a normalized event the sink could not write then (a constraint
	// since relaxed); valid.
	rating := 80
	ev := review.Event{Op: review.OpUpsert, Review: review.Review{ID: "generic:dl-5", Provider: "generic", ExternalID: "dl-5",
		MovieID: "tt0111161", Author: "a", Rating: &rating, Version: 3, SourceUpdatedAt: testlog.T0, IngestedAt: testlog.T0}}
	evBytes, _ := ev.Marshal()
	sinkFail := envelope.NewDeadLetter(envelope.StageSink, "constraint", errors.New("check constraint"), ev.Review.ID, evBytes, now)
	sinkFail.Provider, sinkFail.Topic = "generic", st.Topic(kafkax.TopicNormalized)
	sinkFail.Headers = map[string]string{kafkax.HeaderEventID: "evt_dl5", kafkax.HeaderSource: "poll"}

	var msgs []kafka.Message
	for _, dl := range []envelope.DeadLetter{notJSON, refused, procFixed, procBad, sinkFail, notJSON} {
		m, err := dl.Message()
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	produce(t, st, kafkax.TopicDLQ, msgs...)

	// list and show
	var list struct {
		Count       int                    `json:"count"`
		DeadLetters []deadletters.ListItem `json:"dead_letters"`
	}
	if r := runJSON(t, &list, "dlq", "list", "--json"); r.code != ExitOK || list.Count != 6 {
		t.Fatalf("dlq list: exit %d, %d dead letters, want 0 and 6", r.code, list.Count)
	}
	if r := runJSON(t, &list, "dlq", "list", "--json", "--reason", "not_json", "--stage", "receiver"); list.Count != 2 || r.code != 0 {
		t.Fatalf("dlq list --reason not_json: %d, want 2", list.Count)
	}
	r := run(t, "dlq", "list", "--stage", "sink")
	if r.code != ExitOK || !strings.Contains(r.stdout, sinkFail.ID) || strings.Contains(r.stdout, notJSON.ID) {
		t.Fatalf("dlq list --stage sink: %q", r.stdout)
	}
	r = run(t, "dlq", "show", notJSON.ID)
	if r.code != ExitOK || !strings.Contains(r.stdout, "{oops") || !strings.Contains(r.stdout, "2 occurrences") {
		t.Fatalf("dlq show: %q", r.stdout)
	}
	if r = run(t, "dlq", "show", notJSON.ID, "--raw"); r.code != ExitOK || r.stdout != "{oops" {
		t.Fatalf("dlq show --raw: exit %d, %q; want the record's bytes alone", r.code, r.stdout)
	}
	if r = run(t, "dlq", "show", "dlq_nope"); r.code != ExitError || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("dlq show of an unknown id: exit %d, stderr %q: want 2 and one line", r.code, r.stderr)
	}

	rawBefore, normBefore := endOffsets(t, st, kafkax.TopicRaw), endOffsets(t, st, kafkax.TopicNormalized)
	var rep deadletters.Report
	// The bug is not fixed yet: only the sink's dead letter would go.
	buggy := newApp(nil, nil)
	buggy.Providers = func() *provider.Registry { return provider.NewRegistry(buggyGeneric{}) }
	if r := runAppJSON(t, buggy, &rep, "dlq", "redrive", "--dry-run", "--json"); r.code != ExitDrift || len(rep.Redriven) != 1 || len(rep.Invalid) != 4 {
		t.Fatalf("redrive --dry-run with the bug: exit %d, %d would go, %d invalid; want 1, 1, 4", r.code, len(rep.Redriven), len(rep.Invalid))
	}
	// The cause is fixed: the commands below run with provider.Default.

	r = run(t, "dlq", "redrive", "--dry-run")
	if r.code != ExitDrift || strings.Count(r.stdout, "\nwould redrive ")+1 != 3 || strings.Count(r.stdout, "\nstill invalid ") != 2 {
		t.Fatalf("redrive --dry-run: exit %d\n%s", r.code, r.stdout)
	}
	if endOffsets(t, st, kafkax.TopicRaw) != rawBefore || endOffsets(t, st, kafkax.TopicNormalized) != normBefore || ledgerRows(t, st) != 0 {
		t.Fatal("a dry run wrote something")
	}

	if r := runJSON(t, &rep, "dlq", "redrive", "--rate", "200/s", "--json"); r.code != ExitDrift {
		t.Fatalf("redrive: exit %d, want 1 (two dead letters are still invalid)", r.code)
	}
	if len(rep.Redriven) != 3 || len(rep.Invalid) != 2 || len(rep.AlreadyRedriven) != 0 {
		t.Fatalf("redrive: %d redriven, %d invalid, %d before; want 3, 2, 0", len(rep.Redriven), len(rep.Invalid), len(rep.AlreadyRedriven))
	}
	for _, it := range rep.Invalid {
		if it.ID != notJSON.ID && it.ID != procBad.ID {
			t.Errorf("%s reported invalid", it.ID)
		}
	}
	raw := redriven(readAll(t, st, kafkax.TopicRaw))
	norm := redriven(readAll(t, st, kafkax.TopicNormalized))
	if len(raw) != 2 || len(norm) != 1 {
		t.Fatalf("redriven records: %d raw, %d normalized; want 2 and 1", len(raw), len(norm))
	}
	for _, m := range raw {
		switch envelope.Header(m, kafkax.HeaderRedriveOf) {
		case refused.ID:
			env, err := envelope.ParseRaw(m.Value)
			if err != nil || string(m.Key) != "generic:dl-2" || env.Source != envelope.SourceWebhook ||
				env.EventID != envelope.EventID("generic", "msg_2", 0) || !bytes.Equal(env.Payload, body) {
				t.Errorf("redriven webhook body: key %s, %+v, %v", m.Key, env, err)
			}
		case procFixed.ID:
			if string(m.Key) != "generic:dl-3" || !bytes.Equal(m.Value, rawOK.Value) || envelope.Header(m, kafkax.HeaderEventID) != "evt_dl3" {
				t.Errorf("redriven raw record: key %s, value changed: %v", m.Key, !bytes.Equal(m.Value, rawOK.Value))
			}
		default:
			t.Errorf("unexpected redriven record %s", m.Key)
		}
	}
	if string(norm[0].Key) != ev.Review.ID || !bytes.Equal(norm[0].Value, evBytes) || envelope.Header(norm[0], kafkax.HeaderEventID) != "evt_dl5" {
		t.Errorf("redriven normalized record: key %s", norm[0].Key)
	}
	if n := ledgerRows(t, st); n != 3 {
		t.Fatalf("dlq_redrives has %d rows, want 3", n)
	}

	// A second redrive sends nothing again.
	rawBefore, normBefore = endOffsets(t, st, kafkax.TopicRaw), endOffsets(t, st, kafkax.TopicNormalized)
	if r := runJSON(t, &rep, "dlq", "redrive", "--json"); r.code != ExitDrift || len(rep.Redriven) != 0 || len(rep.AlreadyRedriven) != 3 {
		t.Fatalf("second redrive: exit %d, %d redriven, %d before; want 1, 0, 3", r.code, len(rep.Redriven), len(rep.AlreadyRedriven))
	}
	if endOffsets(t, st, kafkax.TopicRaw) != rawBefore || endOffsets(t, st, kafkax.TopicNormalized) != normBefore || ledgerRows(t, st) != 3 {
		t.Fatal("the second redrive wrote something")
	}
	// Only the fixed ones, selected by reason: nothing left, exit 0.
	if r := run(t, "dlq", "redrive", "--reason", "unknown_shape,constraint"); r.code != ExitOK || !strings.Contains(r.stdout, "2 redriven before") {
		t.Fatalf("redrive --reason: exit %d, %q", r.code, r.stdout)
	}
	// list shows what was redriven.
	if r := runJSON(t, &list, "dlq", "list", "--json"); r.code != ExitOK {
		t.Fatal("dlq list failed")
	}
	n := 0
	for _, it := range list.DeadLetters {
		if it.Redriven != nil {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("dlq list shows %d redriven, want 3", n)
	}
}

func redriven(msgs []kafka.Message) []kafka.Message {
	var out []kafka.Message
	for _, m := range msgs {
		if envelope.Header(m, kafkax.HeaderRedriveOf) != "" {
			out = append(out, m)
		}
	}
	return out
}

func ledgerRows(t *testing.T, st *testenv.Stack) int {
	t.Helper()
	var n int
	if err := st.DB.QueryRow(context.Background(), `SELECT count(*) FROM dlq_redrives`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDLQUsage(t *testing.T) {
	for _, args := range [][]string{{"dlq", "-h"}, {"dlq", "list", "-h"}, {"dlq", "show", "-h"}, {"dlq", "redrive", "-h"},
		{"replay", "-h"}, {"backfill", "-h"}, {"backfill", "status", "-h"}} {
		var out, errb bytes.Buffer
		if code := newApp(&out, &errb).Run(context.Background(), args); code != ExitOK || !strings.Contains(errb.String(), "usage: reviewctl") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
	for _, args := range [][]string{{"dlq", "redrive", "--rate", "fast"}, {"dlq", "list", "--bogus"}, {"reconcile", "--since", "yesterday"},
		{"replay", "--from", "x"}, {"backfill", "status", "--limit", "many"}, {"dlq", "show"}} {
		var out, errb bytes.Buffer
		if code := newApp(&out, &errb).Run(context.Background(), args); code != ExitError || strings.Count(errb.String(), "\n") != 1 ||
			!strings.HasPrefix(errb.String(), "reviewctl: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := newApp(&out, &errb).Run(context.Background(), []string{"replay"}); code != ExitError || !strings.Contains(errb.String(), "--from") {
		t.Errorf("replay without --from: exit %d, %q", code, errb.String())
	}
}
