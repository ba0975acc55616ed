package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// startSink runs the sink binary against st without waiting for it: the
// crash test kills it at chosen moments (testenv.Proc.Kill is SIGKILL).
func startSink(t *testing.T, bin string, st *testenv.Stack, extra ...string) *testenv.Proc {
	t.Helper()
	env := append(append([]string{}, st.Env()...), "SINK_ADDR="+testenv.FreeAddr(t), "LOG_LEVEL=info")
	return testenv.Spawn(t, "sink", bin, append(env, extra...)...)
}

// consumed is the sum of the next offsets the store holds.
func consumed(t *testing.T, st *testenv.Stack) int64 {
	var n int64
	if err := st.DB.QueryRow(context.Background(), `SELECT COALESCE(sum(next_offset), 0) FROM consumer_offsets`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The sink killed with SIGKILL twice while it writes under load, then
// restarted: the store ends equal to the greatest change per id, the
// stored offsets equal the log's end, and no change was written twice (a
// trigger logs every row write, in the same transaction).
func TestKill9MidBatchLosesNothingAndAppliesNothingTwice(t *testing.T) {
	st := testenv.New(t)
	bin := testenv.Binary(t, "sink")
	ctx := context.Background()
	logged := true
	if _, err := st.DB.Exec(ctx, `
		CREATE TABLE write_log (id text, version bigint, content_hash text, deleted boolean);
		CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO write_log VALUES (NEW.id, NEW.version, NEW.content_hash, NEW.deleted); RETURN NEW; END $$;
		CREATE TRIGGER reviews_write_log AFTER INSERT OR UPDATE ON reviews FOR EACH ROW EXECUTE FUNCTION log_write();`); err != nil {
		if !strings.Contains(err.Error(), "58P01") {
			t.Fatal(err)
		}
		// A server whose PL/pgSQL library was upgraded under it cannot
		// load it until restarted; the other assertions still hold.
		t.Logf("no write log: %v", err)
		logged = false
	}

	// 600 reviews, each with versions 1..4 (some with a same-version
	// variant, some deleted), every change sent twice, shuffled: 5000+
	// records in all.
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	var msgs []kafka.Message
	want := map[string]dedupe.Entry{}
	add := func(op review.Op, r review.Review) {
		b, err := review.Event{Op: op, Review: r}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m := kafka.Message{Key: []byte(r.ID), Value: b, Headers: []kafka.Header{
			{Key: kafkax.HeaderAccepted, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))}}}
		msgs = append(msgs, m, m)
		e := dedupe.Entry{Version: r.Version, Hash: dedupe.HashOf(review.ContentHash(op, r)), Deleted: op == review.OpDelete}
		if w, ok := want[r.ID]; !ok || e.Compare(w) > 0 {
			want[r.ID] = e
		}
	}
	for i := range 600 {
		ext := "k" + strconv.Itoa(i)
		movie := fmt.Sprintf("tt%07d", 1+i%40)
		for v := int64(1); v <= 4; v++ {
			rating := rng.IntN(101)
			r := review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext, MovieID: movie,
				Author: "A", Rating: &rating, Title: "v" + strconv.FormatInt(v, 10), Body: strings.Repeat("text ", 40),
				Version: v, SourceUpdatedAt: time.Unix(1_700_000_000+v, 0).UTC(), IngestedAt: time.Now().UTC()}
			add(review.OpUpsert, r)
			if rng.IntN(4) == 0 {
				r.Title += "-variant"
				add(review.OpUpsert, r)
			}
		}
		if rng.IntN(5) == 0 {
			add(review.OpDelete, review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext,
				Version: int64(3 + rng.IntN(2)), SourceUpdatedAt: time.Unix(1_700_000_100, 0).UTC()})
		}
	}
	rng.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	total := int64(len(msgs))

	// Produce in chunks while the sink runs, so it is killed under load.
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicNormalized)})
	defer w.Close()
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < len(msgs); i += 200 {
			if err := w.WriteMessages(ctx, msgs[i:min(i+200, len(msgs))]...); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()

	env := []string{"SINK_MAX_BATCH=150"}
	p := startSink(t, bin, st, env...)
	for _, frac := range []int64{4, 2} { // kill at a quarter, then at half
		testenv.Eventually(t, 120*time.Second, func() error {
			if n := consumed(t, st); n < total/frac {
				return fmt.Errorf("%d of %d records consumed", n, total)
			}
			return nil
		})
		p.Kill()
		t.Logf("killed the sink with %d of %d records consumed", consumed(t, st), total)
		p = startSink(t, bin, st, env...)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 120*time.Second, func() error {
		if n := consumed(t, st); n != total {
			return fmt.Errorf("%d of %d records consumed", n, total)
		}
		return nil
	})

	// The store's offsets are the log's end, partition by partition.
	topic := st.Topic(kafkax.TopicNormalized)
	ends, err := kafkax.EndOffsets(ctx, st.Brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		var next int64
		_ = st.DB.QueryRow(ctx, `SELECT COALESCE(max(next_offset), 0) FROM consumer_offsets WHERE topic = $1 AND partition = $2`,
			topic, p).Scan(&next)
		if next != end {
			t.Errorf("partition %d: stored next offset %d, log end %d", p, next, end)
		}
	}

	// Every review at its greatest change.
	rows, err := st.DB.Query(ctx, `SELECT id, version, content_hash, deleted FROM reviews`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]dedupe.Entry{}
	for rows.Next() {
		var id, hash string
		var e dedupe.Entry
		if err := rows.Scan(&id, &e.Version, &hash, &e.Deleted); err != nil {
			t.Fatal(err)
		}
		e.Hash = dedupe.HashOf(hash)
		got[id] = e
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for id, e := range want {
		if g, ok := got[id]; !ok || !g.SameChange(e) {
			t.Fatalf("%s: stored %+v, want %+v", id, g, e)
		}
	}
	if !logged {
		return
	}
	// No change written twice.
	var dup int
	if err := st.DB.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM write_log
		GROUP BY id, version, content_hash, deleted HAVING count(*) > 1) d`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Fatalf("%d changes were written more than once", dup)
	}
}
