package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/pkg/webhook"
)

// The limits of a legal record (docs/contract.md §8), end to end through the real
// binaries, Kafka and PostgreSQL: the largest legal fields and deliveries
// become readable whatever the batching, one past a limit is dead-lettered
// alone, and refused bodies are kept byte for byte.

// genericUpsert is one generic event, written without HTML escaping so a
// body of '<' stays one byte per character in the delivery and becomes six
// in the normalized record (\u003c): the worst growth between stages.
func genericUpsert(t *testing.T, id, movie string, edit func(d map[string]any)) []byte {
	t.Helper()
	d := map[string]any{"review_id": id, "version": 1, "updated_at": "2026-11-20T10:00:00Z",
		"movie": map[string]any{"imdb_id": movie, "title": "A movie"}, "author": "Ann", "title": "T", "body": "B"}
	if edit != nil {
		edit(d)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"type": "review.upserted", "data": d}); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(buf.Bytes())
}

func batchBody(events ...[]byte) string {
	return `{"events":[` + string(bytes.Join(events, []byte(","))) + `]}`
}

// webhookAnswer posts a signed delivery and returns the status and body.
func webhookAnswer(t *testing.T, receiver, id, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, receiver+"/webhooks/generic", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	webhook.SetHeaders(req.Header, testSecret, id, time.Now(), []byte(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return res.StatusCode, v
}

// stored counts the live rows of ids in the test's store.
func stored(t *testing.T, st *testenv.Stack, ids []string) int {
	t.Helper()
	var n int
	if err := st.DB.QueryRow(t.Context(), `SELECT count(*) FROM reviews WHERE id = ANY($1) AND NOT deleted`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// deadLetters reads the test's reviews.dlq.v1 up to its end offsets.
func deadLetters(t *testing.T, st *testenv.Stack) []envelope.DeadLetter {
	t.Helper()
	topic := st.Topic(kafkax.TopicDLQ)
	var out []envelope.DeadLetter
	for p := 0; p < 3; p++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		conn, err := kafka.DialLeader(ctx, "tcp", st.Brokers[0], topic, p)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		end, _ := conn.ReadLastOffset()
		conn.Close()
		if end > 0 {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: st.Brokers, Topic: topic, Partition: p, MaxBytes: kafkax.FetchBytes})
			for off := int64(0); off < end; off++ {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				d, err := envelope.ParseDeadLetter(m.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, d)
			}
			r.Close()
		}
		cancel()
	}
	return out
}

// TestLongReviewsPassEveryStage is the backfill that stalled partitions for
// good: 12 signed deliveries sent at once, each of 8 reviews with 90 KB
// bodies of '<' (each normalized record six times that), beside a delivery
// at the body limit (ten 100 KB bodies) and one review with every field at
// its limit. Every review becomes readable, and then ordinary small
// webhooks still flow.
func TestLongReviewsPassEveryStage(t *testing.T) {
	st := testenv.New(t)
	receiver := startService(t, st, "receiver", "RECEIVER_ADDR", secretEnv()...)
	startService(t, st, "processor", "PROCESSOR_ADDR")
	startService(t, st, "sink", "SINK_ADDR")
	api := startService(t, st, "api", "API_ADDR")
	run := testenv.RandomID()
	movie := "tt0000042"

	var (
		mu  sync.Mutex
		ids []string
	)
	var bodies []string
	for d := 0; d < 12; d++ {
		var events [][]byte
		for e := 0; e < 8; e++ {
			id := fmt.Sprintf("long-%s-%d-%d", run, d, e)
			events = append(events, genericUpsert(t, id, movie, func(m map[string]any) { m["body"] = strings.Repeat("<", 90_000) }))
			ids = append(ids, "generic:"+id)
		}
		bodies = append(bodies, batchBody(events...))
	}
	var edge [][]byte
	for e := 0; e < 10; e++ {
		id := fmt.Sprintf("edge-%s-%d", run, e)
		edge = append(edge, genericUpsert(t, id, movie, func(m map[string]any) { m["body"] = strings.Repeat("é", review.MaxBodyBytes/2) }))
		ids = append(ids, "generic:"+id)
	}
	bodies = append(bodies, batchBody(edge...))
	if n := len(bodies[len(bodies)-1]); n > 1<<20 {
		t.Fatalf("the edge delivery is %d bytes, over the receiver's 1 MiB", n)
	}
	// Every field at its limit, review_id included.
	maxID := ("max-" + run + strings.Repeat("x", review.MaxExternalIDBytes))[:review.MaxExternalIDBytes]
	bodies = append(bodies, string(genericUpsert(t, maxID, movie, func(m map[string]any) {
		m["author"] = strings.Repeat("é", review.MaxAuthorChars)
		m["title"] = strings.Repeat("🎬", review.MaxTitleChars)
		m["movie"].(map[string]any)["title"] = strings.Repeat("<", review.MaxMovieTitleChars)
		m["url"] = "https://example.com/" + strings.Repeat("a", review.MaxURLBytes-len("https://example.com/"))
		m["body"] = strings.Repeat("\u2028", review.MaxBodyBytes/3)
	})))
	ids = append(ids, "generic:"+maxID)

	var wg sync.WaitGroup
	for i, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, ans := webhookAnswer(t, receiver.URL(), fmt.Sprintf("long-%s-%d", run, i), body)
			if code != http.StatusOK {
				mu.Lock()
				defer mu.Unlock()
				t.Errorf("delivery %d of %d bytes answered %d %v", i, len(body), code, ans)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		if n := stored(t, st, ids); n != len(ids) {
			return fmt.Errorf("%d of %d long reviews readable", n, len(ids))
		}
		return nil
	})
	var rv review.Review
	if code, err := getJSON(api.URL()+"/v1/reviews/generic:"+maxID, &rv); err != nil || code != http.StatusOK {
		t.Fatalf("GET the review with every field at its limit: %d %v", code, err)
	}
	if len([]rune(rv.Title)) != review.MaxTitleChars || len([]rune(rv.Author)) != review.MaxAuthorChars || len(rv.URL) != review.MaxURLBytes {
		t.Fatalf("fields cut on the way: title %d, author %d characters, url %d bytes", len([]rune(rv.Title)), len([]rune(rv.Author)), len(rv.URL))
	}
	if dls := deadLetters(t, st); len(dls) != 0 {
		t.Fatalf("%d dead letters, want none: first %s %s", len(dls), dls[0].Reason, dls[0].Error)
	}

	// Small webhooks still flow for other keys and movies.
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("small-%s-%d", run, i)
		if code, ans := webhookAnswer(t, receiver.URL(), "small-"+id, string(genericUpsert(t, id, "tt0000043", nil))); code != http.StatusOK {
			t.Fatalf("small webhook answered %d %v", code, ans)
		}
		testenv.Eventually(t, 10*time.Second, func() error {
			code, err := getJSON(api.URL()+"/v1/reviews/generic:"+id, nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("small review %s: %d %v", id, code, err)
			}
			return nil
		})
	}
}

// TestFieldOverItsLimitIsDeadLetteredAlone: a delivery of two events, one
// title one character past the limit. The delivery is accepted, the
// neighbour stored, the offender dead-lettered by the processor with
// reason field_too_long and its original bytes, and never stored.
func TestFieldOverItsLimitIsDeadLetteredAlone(t *testing.T) {
	st := testenv.New(t)
	receiver := startService(t, st, "receiver", "RECEIVER_ADDR", secretEnv()...)
	startService(t, st, "processor", "PROCESSOR_ADDR")
	startService(t, st, "sink", "SINK_ADDR")
	run := testenv.RandomID()
	good, long := "ok-"+run, "long-"+run
	goodEv := genericUpsert(t, good, "tt0000044", func(m map[string]any) { m["title"] = strings.Repeat("é", review.MaxTitleChars) })
	longEv := genericUpsert(t, long, "tt0000044", func(m map[string]any) { m["title"] = strings.Repeat("é", review.MaxTitleChars+1) })
	if code, ans := webhookAnswer(t, receiver.URL(), "mixed-"+run, batchBody(goodEv, longEv)); code != http.StatusOK {
		t.Fatalf("delivery answered %d %v, want 200 (the offender is dead-lettered alone)", code, ans)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		if stored(t, st, []string{"generic:" + good}) != 1 {
			return fmt.Errorf("the neighbour is not stored yet")
		}
		for _, d := range deadLetters(t, st) {
			if d.Key == "generic:"+long {
				if d.Reason != string(review.ReasonFieldTooLong) || d.Stage != envelope.StageProcessor {
					return fmt.Errorf("dead letter %s/%s, want processor/field_too_long", d.Stage, d.Reason)
				}
				raw, err := envelope.ParseRaw(d.RecordBytes())
				if err != nil || !bytes.Equal(raw.Payload, longEv) {
					return fmt.Errorf("the dead letter does not hold the event's bytes: %v", err)
				}
				return nil
			}
		}
		return fmt.Errorf("no dead letter for %s yet", long)
	})
	if stored(t, st, []string{"generic:" + long}) != 0 {
		t.Fatal("the over-long review was stored")
	}
}

// TestPolledPageOfLongReviews: the poller reads pages of 100 reviews with
// 100 KB bodies from the provider simulator (about 10 MB a page); every
// one becomes readable.
func TestPolledPageOfLongReviews(t *testing.T) {
	st := testenv.New(t)
	simAddr := testenv.FreeAddr(t)
	sim := testenv.Spawn(t, "simulator", testenv.Binary(t, "simulator"), "SIMULATOR_ADDR="+simAddr,
		"SIMULATOR_TRICKLE_PER_S=0", "PROVIDER_API_KEY=sim-key", "RECEIVER_URL=http://127.0.0.1:1", "LOG_LEVEL=warn")
	sim.Addr = simAddr
	sim.WaitReady(t, "/healthz")
	t.Cleanup(func() { _ = sim.Stop() })
	run := testenv.RandomID()
	var ids []string
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("polled-%s-%03d", run, i)
		data := map[string]any{"review_id": id, "version": 1, "updated_at": time.Now().UTC().Format(time.RFC3339),
			"movie": map[string]any{"imdb_id": "tt0000045", "title": "Polled"}, "body": strings.Repeat("p", review.MaxBodyBytes)}
		b, _ := json.Marshal(map[string]any{"provider": "generic", "op": "upsert", "review": data, "webhook": false})
		res, err := http.Post(sim.URL()+"/control/reviews", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("simulator control answered %d", res.StatusCode)
		}
		ids = append(ids, "generic:"+id)
	}
	startService(t, st, "poller", "POLLER_ADDR", "SIMULATOR_URL="+sim.URL(), "POLL_PROVIDERS=generic",
		"POLL_INTERVAL=1s", "POLL_PAGE_SIZE=100")
	startService(t, st, "processor", "PROCESSOR_ADDR")
	startService(t, st, "sink", "SINK_ADDR")
	testenv.Eventually(t, 90*time.Second, func() error {
		if n := stored(t, st, ids); n != len(ids) {
			return fmt.Errorf("%d of %d polled reviews readable", n, len(ids))
		}
		return nil
	})
}
