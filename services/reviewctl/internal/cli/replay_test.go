package cli

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/replay"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
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
	copyRec := testlog.RawMessage("rp-00", 2, false, "body w1", "evt_copy")
	copyRec.Value = bytes.Replace(copyRec.Value, []byte(`"source":"webhook"`), []byte(`"source":"replay"`), 1)
	copyRec.Time = at["w1"]
	junk := kafka.Message{Key: []byte("generic:junk"), Value: []byte("garbage"), Time: at["w2"]}
	refused := testlog.RawMessage("rp-bad", 1, false, "x", "evt_refused")
	refused.Value = bytes.Replace(refused.Value, []byte(`"version":1`), []byte(`"version":0`), 1)
	refused.Time = at["w2"]
	var msgs []kafka.Message
	originals := map[string]kafka.Message{} // by event id
	for _, group := range []string{"old", "w1", "w2", "late"} {
		if group == "w2" {
			msgs = append(msgs, copyRec, junk, refused)
		}
		for i := range 12 {
			m := testlog.RawMessage(fmt.Sprintf("rp-%02d", i), int64(len(originals)/12+2), false, "body "+group, "evt_"+group+fmt.Sprint(i))
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
		replay.Stats
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
			orig := envelope.Header(m, kafkax.HeaderReplayOf)
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
			if err != nil || env.Source != envelope.SourceReplay || env.EventID != replay.EventID(orig) ||
				!bytes.Equal(env.Payload, oenv.Payload) || !env.ReceivedAt.Equal(oenv.ReceivedAt) || !bytes.Equal(m.Key, o.Key) ||
				envelope.Header(m, kafkax.HeaderSource) != "replay" || envelope.Header(m, kafkax.HeaderAccepted) != envelope.Header(o, kafkax.HeaderAccepted) {
				t.Errorf("copy of %s: key %s, envelope %+v, err %v", orig, m.Key, env, err)
			}
		}
		return out
	}

	for round := 1; round <= 2; round++ {
		if r := runJSON(t, &sum, "replay", "--from", from, "--to", to, "--json"); r.code != ExitOK || sum.Published != 24 ||
			sum.Replays != 1 || sum.Unreadable != 1 || sum.Invalid != 1 {
			t.Fatalf("replay round %d: exit %d, %+v; want 24 published, 1 earlier replay, 1 unreadable and 1 invalid skipped", round, r.code, sum)
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

// TestReplayStoreUnchanged runs the real processor and sink: after the log
// is in the store, replaying a window (twice) leaves the reviews table as it
// was, and the processor emits nothing for the copies.
func TestReplayStoreUnchanged(t *testing.T) {
	st := newStack(t)
	startService(t, st, "processor", "PROCESSOR_ADDR")
	startService(t, st, "sink", "SINK_ADDR")
	now := time.Now().UTC().Truncate(time.Second)
	var msgs []kafka.Message
	for v := 1; v <= 3; v++ { // in time order, as a log is
		for i := range 30 {
			if v > 1+i%3 {
				continue
			}
			m := testlog.RawMessage(fmt.Sprintf("rs-%02d", i), int64(v), v == 3 && i%2 == 0, fmt.Sprintf("body %d/%d", i, v), fmt.Sprintf("evt_rs_%d_%d", i, v))
			m.Time = now.Add(time.Duration(v-4) * time.Hour) // versions 1, 2, 3 at -3h, -2h, -1h
			msgs = append(msgs, m)
		}
	}
	produce(t, st, kafkax.TopicRaw, msgs...)
	waitPipeline(t, st)
	var rows int
	if err := st.DB.QueryRow(context.Background(), `SELECT count(*) FROM reviews`).Scan(&rows); err != nil || rows != 30 {
		t.Fatalf("%d rows in the store, want 30 (%v)", rows, err)
	}
	if r := run(t, "reconcile"); r.code != ExitOK {
		t.Fatalf("reconcile after the pipeline: exit %d", r.code)
	}
	before, normBefore := tableHash(t, st.DB), endOffsets(t, st, kafkax.TopicNormalized)
	from, to := now.Add(-150*time.Minute).Format(time.RFC3339), now.Add(-30*time.Minute).Format(time.RFC3339)
	for round := 1; round <= 2; round++ {
		if r := run(t, "replay", "--from", from, "--to", to); r.code != ExitOK || !strings.Contains(r.stdout, "replayed 30 events") {
			t.Fatalf("replay round %d: exit %d, %q", round, r.code, r.stdout)
		}
		waitPipeline(t, st)
		if h := tableHash(t, st.DB); h != before {
			t.Fatalf("replay round %d changed the reviews table", round)
		}
		if n := endOffsets(t, st, kafkax.TopicNormalized); n != normBefore {
			t.Fatalf("replay round %d: the processor emitted %d changes for copies", round, n-normBefore)
		}
	}
	if r := run(t, "reconcile"); r.code != ExitOK {
		t.Fatalf("reconcile after the replays: exit %d", r.code)
	}
}

// waitPipeline waits until the processor has committed every record of
// reviews.raw.v1 and the sink every record of reviews.normalized.v1.
func waitPipeline(t *testing.T, st *testenv.Stack) {
	t.Helper()
	ctx := context.Background()
	cl := &kafka.Client{Addr: kafka.TCP(st.Brokers...), Timeout: 10 * time.Second}
	caughtUp := func(topic kafkax.Topic, committed func(p int) (int64, error)) error {
		ss, err := kafkalog.New(st.Brokers, st.Topic(topic)).Snapshot(ctx, time.Time{}, time.Time{})
		if err != nil {
			return err
		}
		for _, s := range ss {
			c, err := committed(s.Partition)
			if err != nil {
				return err
			}
			if c < s.To {
				return fmt.Errorf("%s/%d: committed %d of %d", topic, s.Partition, c, s.To)
			}
		}
		return nil
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		res, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: st.Names.Group(kafkax.GroupProcessor),
			Topics: map[string][]int{st.Topic(kafkax.TopicRaw): {0, 1, 2, 3, 4, 5}}})
		if err != nil {
			return err
		}
		err = caughtUp(kafkax.TopicRaw, func(p int) (int64, error) {
			for _, o := range res.Topics[st.Topic(kafkax.TopicRaw)] {
				if o.Partition == p {
					return o.CommittedOffset, nil
				}
			}
			return -1, nil
		})
		if err != nil {
			return err
		}
		return caughtUp(kafkax.TopicNormalized, func(p int) (int64, error) {
			var next int64
			err := st.DB.QueryRow(ctx, `SELECT coalesce(max(next_offset), 0) FROM consumer_offsets WHERE topic = $1 AND partition = $2`,
				st.Topic(kafkax.TopicNormalized), p).Scan(&next)
			return next, err
		})
	})
}
