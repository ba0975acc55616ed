package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// stream is a generated raw log and what the normalized topic must end with.
type stream struct {
	msgs []kafka.Message
	// best is, per canonical id, the change that must win.
	best map[string]dedupe.Entry
	// sent maps event ids to the raw records that carried them.
	sent map[string]kafka.Message
}

func newStream() *stream {
	return &stream{best: map[string]dedupe.Entry{}, sent: map[string]kafka.Message{}}
}

// add appends a raw record of a generic event for review id, with a fresh
// event id and acceptance time.
func (s *stream) add(t *testing.T, id, payload string) {
	t.Helper()
	eventID := fmt.Sprintf("evt_%d", len(s.sent))
	m := rawMessage(t, "generic", id, payload, eventID)
	for i, h := range m.Headers {
		if h.Key == kafkax.HeaderAccepted {
			m.Headers[i].Value = []byte(time.Now().UTC().Format(time.RFC3339Nano))
		}
	}
	s.msgs = append(s.msgs, m)
	s.sent[eventID] = m
	ev, err := provider.Generic{}.Normalize([]byte(payload), time.Now())
	if err != nil {
		t.Fatalf("test event %s: %v", payload, err)
	}
	e := dedupe.EntryOf(ev, -1)
	if b, ok := s.best[ev.Review.ID]; !ok || e.Compare(b) > 0 {
		s.best[ev.Review.ID] = e
	}
}

// history adds, for each of keys, versions from..to delivered once or
// twice in a random order per key; every fourth key is then deleted at
// to+1 and receives older upserts after the delete; every fourth key (the
// next) gets a same-version conflicting variant of its last version.
func (s *stream) history(t *testing.T, r *rand.Rand, keys []string, from, to int64) {
	for i, id := range keys {
		var payloads []string
		for v := from; v <= to; v++ {
			for range 1 + r.IntN(2) {
				payloads = append(payloads, upsert(id, v, float64(v)))
			}
		}
		if i%4 == 1 {
			payloads = append(payloads, upsert(id, to, 9.5))
		}
		r.Shuffle(len(payloads), func(a, b int) { payloads[a], payloads[b] = payloads[b], payloads[a] })
		if i%4 == 0 {
			payloads = append(payloads, deleted(id, to+1), upsert(id, to, 1), upsert(id, to+1, 2), deleted(id, to+1))
		}
		for _, p := range payloads {
			s.add(t, id, p)
		}
	}
}

func keys(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// checkNormalized reads reviews.normalized.v1 and holds it to the
// contract: per key, no change older than one already emitted, the last one
// the winner, headers copied from the raw record that carried the change.
// It returns the number of records per key.
func checkNormalized(t *testing.T, st *testenv.Stack, s *stream) map[string]int {
	t.Helper()
	out := readAll(t, st.Brokers, st.Topic(kafkax.TopicNormalized))
	last := map[string]dedupe.Entry{}
	count := map[string]int{}
	for _, m := range out {
		var ev review.Event
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatalf("normalized value %s: %v", m.Value, err)
		}
		key := string(m.Key)
		if key != ev.Review.ID {
			t.Fatalf("record key %q, review id %q", key, ev.Review.ID)
		}
		e := dedupe.EntryOf(ev, -1)
		if prev, ok := last[key]; ok && e.Compare(prev) < 0 {
			t.Errorf("%s: version %d (deleted=%v) emitted after version %d (deleted=%v): stale output",
				key, e.Version, e.Deleted, prev.Version, prev.Deleted)
		}
		last[key] = e
		count[key]++
		raw, ok := s.sent[envelope.Header(m, kafkax.HeaderEventID)]
		if !ok {
			t.Fatalf("%s: event-id header %q is not one of the raw records'", key, envelope.Header(m, kafkax.HeaderEventID))
		}
		if got, want := envelope.Header(m, kafkax.HeaderAccepted), envelope.Header(raw, kafkax.HeaderAccepted); got != want {
			t.Errorf("%s: accepted-at %q, raw record had %q", key, got, want)
		}
		if string(raw.Key) != key {
			t.Errorf("%s: event-id of a record of %s", key, raw.Key)
		}
	}
	for id, want := range s.best {
		got, ok := last[id]
		if !ok {
			t.Errorf("%s: never emitted", id)
			continue
		}
		if !got.SameChange(want) {
			t.Errorf("%s ends at version %d deleted=%v, want version %d deleted=%v (hash %s)", id, got.Version, got.Deleted,
				want.Version, want.Deleted, want.HashString())
		}
	}
	if len(last) != len(s.best) {
		t.Errorf("%d keys emitted, want %d", len(last), len(s.best))
	}
	return count
}

func seed(t *testing.T) uint64 {
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d", s)
	return s
}

// One processor: duplicates, reordering, deletes and conflicts settle on
// the winner per key, and N bad records give exactly N dead letters, each
// with its original bytes and location; the group's lag returns to 0.
func TestProcessorDedupesAndDeadLetters(t *testing.T) {
	st := testenv.New(t)
	r := rand.New(rand.NewPCG(seed(t), 0))
	s := newStream()
	s.history(t, r, keys("k", 24), 1, 4)

	bad := []struct {
		msg    kafka.Message
		reason string
	}{
		{kafka.Message{Key: []byte("generic:bad1"), Value: []byte("\x00\x01 not an envelope")}, ReasonInvalidEnvelope},
		{kafka.Message{Key: []byte("generic:bad2")}, ReasonInvalidEnvelope},
		{rawMessage(t, "acme", "r1", upsert("r1", 1, 5), "evt_bad3"), ReasonUnknownProvider},
		{rawMessage(t, "generic", "bad4", strings.Replace(upsert("bad4", 1, 5), `"version":1`, `"version":0`, 1), "evt_bad4"), string(provider.ReasonInvalidField)},
		{rawMessage(t, "generic", "bad5", `{"type":"review.liked","data":{}}`, "evt_bad5"), string(provider.ReasonUnknownShape)},
		{rawMessage(t, "generic", "bad6", upsert("k03", 9, 5), "evt_bad6"), ReasonKeyMismatch},
		{rawMessage(t, "generic", "bad7", strings.Replace(upsert("bad7", 1, 5), "tt0111161", "tt12", 1), "evt_bad7"), string(provider.ReasonInvalidField)},
	}
	msgs := append([]kafka.Message(nil), s.msgs...)
	wantReasons := map[string]int{}
	for _, b := range bad {
		at := r.IntN(len(msgs) + 1)
		msgs = append(msgs[:at], append([]kafka.Message{b.msg}, msgs[at:]...)...)
		wantReasons[b.reason]++
	}
	produce(t, st, msgs...)
	p := start(t, st, "a", nil)
	waitLagZero(t, st, 60*time.Second)

	count := checkNormalized(t, st, s)
	for id, n := range count {
		if n > 6 {
			t.Errorf("%s emitted %d times: duplicates were not dropped", id, n)
		}
	}

	dlq := readAll(t, st.Brokers, st.Topic(kafkax.TopicDLQ))
	if len(dlq) != len(bad) {
		t.Fatalf("%d dead letters, want exactly %d", len(dlq), len(bad))
	}
	raws := readAll(t, st.Brokers, st.Topic(kafkax.TopicRaw))
	byLoc := map[string]kafka.Message{}
	for _, m := range raws {
		byLoc[fmt.Sprintf("%d/%d", m.Partition, m.Offset)] = m
	}
	gotReasons := map[string]int{}
	for _, m := range dlq {
		var dl envelope.DeadLetter
		if err := json.Unmarshal(m.Value, &dl); err != nil {
			t.Fatal(err)
		}
		gotReasons[dl.Reason]++
		if dl.Stage != envelope.StageProcessor || dl.Error == "" || dl.Topic != st.Topic(kafkax.TopicRaw) || dl.Partition == nil || dl.Offset == nil {
			t.Errorf("dead letter %+v", dl)
			continue
		}
		src, ok := byLoc[fmt.Sprintf("%d/%d", *dl.Partition, *dl.Offset)]
		if !ok || string(src.Value) != string(dl.RecordBytes()) || string(src.Key) != string(m.Key) {
			t.Errorf("dead letter %s at %d/%d does not carry the raw record there untouched", dl.ID, *dl.Partition, *dl.Offset)
		}
	}
	for reason, n := range wantReasons {
		if gotReasons[reason] != n {
			t.Errorf("reasons %v, want %v", gotReasons, wantReasons)
			break
		}
	}

	if got := p.metric(t, "reviewpipe_processor_records_in_total"); got != float64(len(msgs)) {
		t.Errorf("records_in_total %v, want %d", got, len(msgs))
	}
	if got := p.metric(t, "reviewpipe_dead_letters_total"); got != float64(len(bad)) {
		t.Errorf("dead_letters_total %v, want %d", got, len(bad))
	}
	if got := p.metric(t, "reviewpipe_processor_state_keys"); got != float64(len(s.best)) {
		t.Errorf("state_keys %v, want %d", got, len(s.best))
	}
	if got := p.metric(t, "reviewpipe_processor_consumer_lag"); got != 0 {
		t.Errorf("consumer_lag %v, want 0", got)
	}
}

// Two instances share the partitions; one is cancelled mid-stream. The
// survivor takes its partitions over, restores their state from the
// changelog, and the redelivered old versions that follow are dropped: the
// normalized topic never goes back to an older version, and ends right.
func TestRebalanceMovesState(t *testing.T) {
	st := testenv.New(t)
	r := rand.New(rand.NewPCG(seed(t), 1))
	ks := keys("m", 48)
	first := newStream()
	first.history(t, r, ks, 1, 3)

	a := start(t, st, "a", nil)
	b := start(t, st, "b", nil)
	produce(t, st, first.msgs...)
	// Mid-stream: some of the first phase is out, not necessarily all.
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := a.metric(t, "reviewpipe_processor_records_out_total") + b.metric(t, "reviewpipe_processor_records_out_total"); n < float64(len(ks)) {
			return fmt.Errorf("%v records out", n)
		}
		return nil
	})
	if a.metric(t, "reviewpipe_processor_records_in_total") == 0 || b.metric(t, "reviewpipe_processor_records_in_total") == 0 {
		t.Logf("one instance held no partition before the kill (a=%v b=%v records in)",
			a.metric(t, "reviewpipe_processor_records_in_total"), b.metric(t, "reviewpipe_processor_records_in_total"))
	}
	a.stop(t)
	restoredBefore := b.metric(t, "reviewpipe_processor_restored_records_total")

	// Everything again (duplicates and stale versions now), then one newer
	// version per key.
	second := newStream()
	second.sent = first.sent
	second.msgs = append(second.msgs, first.msgs...)
	second.history(t, r, ks, 4, 4)
	for id, e := range first.best {
		if e.Compare(second.best[id]) > 0 {
			second.best[id] = e
		}
	}
	produce(t, st, second.msgs...)
	waitLagZero(t, st, 90*time.Second)

	if got := b.metric(t, "reviewpipe_processor_restored_records_total"); got <= restoredBefore {
		t.Errorf("the survivor restored no changelog record after the rebalance (%v before, %v after)", restoredBefore, got)
	}
	// The survivor holds every partition and its state every key (once
	// any rebalance still settling has settled).
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := b.metric(t, "reviewpipe_processor_state_keys"); got != float64(len(ks)) {
			return fmt.Errorf("survivor's state has %v keys, want %d", got, len(ks))
		}
		return nil
	})
	count := checkNormalized(t, st, second)
	total := 0
	for _, n := range count {
		total += n
	}
	t.Logf("%d raw records, %d normalized records, %d keys", len(first.msgs)+len(second.msgs), total, len(count))
}

// A Kafka write that fails is transient: the batch is retried, its offsets
// stay uncommitted, and once the write succeeds every record is out.
func TestWriteFailureRetriesTheSameBatch(t *testing.T) {
	st := testenv.New(t)
	// The normalized topic of another namespace, not created yet.
	missing := kafkax.Names{Namespace: "t" + testenv.RandomID() + "."}
	p := start(t, st, "a", func(w *Writers) {
		missingTopic := kafkax.NewWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: missing.Topic(kafkax.TopicNormalized), MaxAttempts: 1})
		t.Cleanup(func() { _ = missingTopic.Close() })
		w.Normalized = missingTopic
	})
	s := newStream()
	ks := keys("w", 10)
	for _, id := range ks {
		s.add(t, id, upsert(id, 1, 7))
	}
	produce(t, st, s.msgs...)
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := p.metric(t, "reviewpipe_processor_write_errors_total"); n < 2 {
			return fmt.Errorf("%v failed writes so far", n)
		}
		return nil
	})
	if lag, err := groupLag(st); err != nil || lag != int64(len(s.msgs)) {
		t.Fatalf("lag %d (%v) while the output cannot be written, want %d: offsets were committed", lag, err, len(s.msgs))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := []kafkax.TopicSpec{{Topic: kafkax.TopicNormalized, Partitions: kafkax.DefaultPartitions, Retention: time.Hour}}
	if err := kafkax.EnsureTopics(ctx, st.Brokers, missing, spec, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kafkax.DeleteTopics(context.Background(), st.Brokers, missing, spec) })
	waitLagZero(t, st, 60*time.Second)

	out := readAll(t, st.Brokers, missing.Topic(kafkax.TopicNormalized))
	got := map[string]bool{}
	for _, m := range out {
		got[string(m.Key)] = true
	}
	var ids []string
	for id := range s.best {
		if !got[id] {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) > 0 {
		t.Fatalf("records skipped after the write failures: %v", ids)
	}
	if n := len(readAll(t, st.Brokers, st.Topic(kafkax.TopicDLQ))); n != 0 {
		t.Fatalf("%d dead letters for a transient failure", n)
	}
}

// lateWriter stands in for kafka-go's writer at its worst: a write whose
// caller gave up is still sent, later (kafka-go keeps the queued records
// of an abandoned write). wait returns once every write it took is sent.
type lateWriter struct {
	w     Writer
	delay time.Duration
	calls chan struct{}
	wg    sync.WaitGroup
}

func (l *lateWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	l.wg.Add(1)
	done := make(chan error, 1)
	go func() {
		defer l.wg.Done()
		select {
		case l.calls <- struct{}{}:
		default:
		}
		time.Sleep(l.delay) // a slow broker, not a wait for a condition
		done <- l.w.WriteMessages(context.Background(), msgs...)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A member that loses partitions mid-batch, while its output writes are
// still on their way, has them written before the next owner restores and
// resends: per key, no change older than one already emitted
// (checkNormalized). Without the worker closing its writers before the
// member rejoins, the old owner's late v1 and v2 land after the new
// owner's resent v2.
func TestRevokedPartitionStopsWritingBeforeTheNextOwner(t *testing.T) {
	st := testenv.New(t)
	calls := make(chan struct{}, 64)
	a := startWith(t, st, "a", func() (Writers, func() error) {
		w, closeWriters := NewWriters(st.Brokers, st.Names)
		late := &lateWriter{w: w.Normalized, delay: 3 * time.Second, calls: calls}
		w.Normalized = late
		return w, func() error {
			late.wg.Wait()
			return closeWriters()
		}
	})
	s := newStream()
	ks := keys("f", 24)
	for _, id := range ks {
		s.add(t, id, upsert(id, 1, 5))
		s.add(t, id, upsert(id, 2, 6))
	}
	produce(t, st, s.msgs...)
	select {
	case <-calls:
	case <-time.After(60 * time.Second):
		t.Fatal("the first member never wrote its outputs")
	}
	// a's output writes are on their way; b joins, and the rebalance
	// gives it some of a's partitions mid-batch.
	b := start(t, st, "b", nil)
	waitLagZero(t, st, 120*time.Second)
	if b.metric(t, "reviewpipe_processor_records_in_total") == 0 {
		t.Fatal("the second member took no partition: nothing was handed over")
	}
	if a.metric(t, "reviewpipe_processor_records_out_total") != 0 {
		t.Logf("the first member finished %v records before it gave its partitions up",
			a.metric(t, "reviewpipe_processor_records_out_total"))
	}
	checkNormalized(t, st, s)
}
