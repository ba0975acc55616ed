package cli

import (
	"bytes"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// TestReplayWindow replays a window of the raw log twice and checks the
// copies: only the window's events, each once per replay, same key and
// payload, source replay, event ids derived from the originals so both
// replays carry the same ids (the processor drops the second as exact
// duplicates), earlier copies never copied again, and --dry-run writes
// nothing.
func TestReplayWindow(t *testing.T) {
	st := newStack(t)
	now := time.Now().UTC().Truncate(time.Second)
	at := map[string]time.Time{"old": now.Add(-3 * time.Hour), "w1": now.Add(-2 * time.Hour), "w2": now.Add(-time.Hour), "late": now.Add(-30 * time.Minute)}
	// In the window too: a copy an earlier replay made, and a record that
	// is no raw envelope. Replay skips both.
	copyRec := rawMessage("rp-00", 2, false, "body w1", "evt_copy")
	copyRec.Value = bytes.Replace(copyRec.Value, []byte(`"source":"webhook"`), []byte(`"source":"replay"`), 1)
	copyRec.Time = at["w1"]
	junk := kafka.Message{Key: []byte("generic:junk"), Value: []byte("garbage"), Time: at["w2"]}
	var msgs []kafka.Message
	originals := map[string]kafka.Message{} // by event id
	for _, group := range []string{"old", "w1", "w2", "late"} {
		if group == "w2" {
			msgs = append(msgs, copyRec, junk)
		}
		for i := range 12 {
			m := rawMessage(fmt.Sprintf("rp-%02d", i), int64(len(originals)/12+2), false, "body "+group, "evt_"+group+fmt.Sprint(i))
			m.Time = at[group]
			msgs = append(msgs, m)
			if group == "w1" || group == "w2" {
				originals["evt_"+group+fmt.Sprint(i)] = m
			}
		}
	}
	produce(t, st, kafkax.TopicRaw, msgs...)

	from, to := now.Add(-150*time.Minute).Format(time.RFC3339), now.Add(-45*time.Minute).Format(time.RFC3339)
	before := endOffsets(t, st, kafkax.TopicRaw)
	var sum struct {
		replayStats
		DryRun bool `json:"dry_run"`
	}
	if r := runJSON(t, &sum, "replay", "--from", from, "--to", to, "--dry-run", "--json"); r.code != ExitOK || sum.Published != 24 || !sum.DryRun {
		t.Fatalf("replay --dry-run: exit %d, %+v", r.code, sum)
	}
	if endOffsets(t, st, kafkax.TopicRaw) != before {
		t.Fatal("replay --dry-run wrote records")
	}
	ids := func() map[string][]string {
		out := map[string][]string{}
		for _, m := range readAll(t, st, kafkax.TopicRaw) {
			orig := envelope.Header(m, HeaderReplayOf)
			if orig == "" {
				continue
			}
			out[orig] = append(out[orig], envelope.Header(m, kafkax.HeaderEventID))
			o, ok := originals[orig]
			if !ok {
				t.Errorf("replayed %s, which is outside the window", orig)
				continue
			}
			env, err := envelope.ParseRaw(m.Value)
			oenv, _ := envelope.ParseRaw(o.Value)
			if err != nil || env.Source != envelope.SourceReplay || env.EventID != replayEventID(orig) ||
				!bytes.Equal(env.Payload, oenv.Payload) || !env.ReceivedAt.Equal(oenv.ReceivedAt) || !bytes.Equal(m.Key, o.Key) ||
				envelope.Header(m, kafkax.HeaderSource) != "replay" || envelope.Header(m, kafkax.HeaderAccepted) != envelope.Header(o, kafkax.HeaderAccepted) {
				t.Errorf("copy of %s: key %s, envelope %+v, err %v", orig, m.Key, env, err)
			}
		}
		return out
	}

	for round := 1; round <= 2; round++ {
		if r := runJSON(t, &sum, "replay", "--from", from, "--to", to, "--json"); r.code != ExitOK || sum.Published != 24 ||
			sum.Replays != 1 || sum.Unreadable != 1 {
			t.Fatalf("replay round %d: exit %d, %+v; want 24 published, 1 earlier replay and 1 unreadable skipped", round, r.code, sum)
		}
		got := ids()
		if len(got) != 24 {
			t.Fatalf("round %d: %d events replayed, want 24", round, len(got))
		}
		for orig, copies := range got {
			if len(copies) != round {
				t.Fatalf("round %d: %s has %d copies", round, orig, len(copies))
			}
			sort.Strings(copies)
			if copies[0] != copies[len(copies)-1] {
				t.Fatalf("the copies of %s have different ids %v: downstream could not drop the repeat", orig, copies)
			}
		}
	}
	// To the end of the log: the late group comes too, the copies do not.
	if r := runJSON(t, &sum, "replay", "--from", from, "--provider", "generic", "--dry-run", "--json"); r.code != ExitOK ||
		sum.Published != 36 || sum.Replays != 1+48 {
		t.Fatalf("replay to the end: exit %d, %+v; want 36 published and 49 earlier replays skipped", r.code, sum)
	}
	if r := run(t, "replay", "--from", from, "--provider", "nope"); r.code != ExitError {
		t.Fatalf("unknown provider: exit %d", r.code)
	}
}
