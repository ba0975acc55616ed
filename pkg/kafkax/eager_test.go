package kafkax_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// TestEagerWriterGathersConcurrentWrites: writes on a quiet writer go out
// one request each; 300 concurrent writes share far fewer requests; every
// record is acknowledged and read back once.
func TestEagerWriterGathersConcurrentWrites(t *testing.T) {
	st := testenv.New(t)
	topic := st.Topic(kafkax.TopicNormalized)
	w := kafkax.NewEagerWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: topic})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for i := range 5 {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(fmt.Sprintf("quiet-%d", i)), Value: []byte("q")}); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.Stats(); s.Writes != 5 || s.Rounds != 5 {
		t.Fatalf("sequential writes: %+v, want 5 writes in 5 rounds", s)
	}

	const writers, per = 300, 3
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			msgs := make([]kafka.Message, per)
			for j := range msgs {
				msgs[j] = kafka.Message{Key: []byte(fmt.Sprintf("load-%d-%d", i, j)), Value: []byte("l")}
			}
			errs <- w.WriteMessages(ctx, msgs...)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := w.Stats()
	if s.Writes != 5+writers || s.Rounds >= 5+writers/2 {
		t.Fatalf("concurrent writes: %+v, want %d writes in fewer than %d rounds", s, 5+writers, 5+writers/2)
	}
	t.Logf("written: %+v", s)
	got := map[string]int{}
	for _, m := range readAll(t, st.Brokers, topic, kafkax.DefaultPartitions) {
		got[string(m.Key)]++
	}
	if len(got) != 5+writers*per {
		t.Fatalf("read back %d keys, want %d", len(got), 5+writers*per)
	}
	for k, n := range got {
		if n != 1 {
			t.Fatalf("key %s read %d times", k, n)
		}
	}
	t.Logf("%+v", s)
}

// TestEagerWriterLingersOnlyWhenBusy: writers that keep it busy (thousands
// of records per second) get rounds that wait for more writes and carry
// many each; after half a second with no write, the next write goes out
// at once again, without a linger.
func TestEagerWriterLingersOnlyWhenBusy(t *testing.T) {
	st := testenv.New(t)
	w := kafkax.NewEagerWriter(kafkax.WriterConfig{Brokers: st.Brokers, Topic: st.Topic(kafkax.TopicNormalized)})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const writers = 16
	begin := time.Now()
	var warm kafkax.EagerStats // once the pace had a window to turn busy
	var warmOnce sync.Once
	writeUntil(t, ctx, w, writers, begin.Add(1500*time.Millisecond), func(i, j int) []kafka.Message {
		if time.Since(begin) > 700*time.Millisecond {
			warmOnce.Do(func() { warm = w.Stats() })
		}
		return []kafka.Message{{Key: []byte(fmt.Sprintf("busy-%d-%d", i, j)), Value: []byte("b")}}
	})
	busy := w.Stats()
	writes, rounds := busy.Writes-warm.Writes, busy.Rounds-warm.Rounds
	t.Logf("from 0.7 s to 1.5 s: %d writes in %d rounds (%.1f per round), %d lingered", writes, rounds,
		float64(writes)/float64(rounds), busy.Lingered-warm.Lingered)
	// Lingering, a round waits until nearly every writer has written again
	// (group commit alone gives about half of them: the other half waits
	// on the round in flight).
	if busy.Lingered == warm.Lingered || writes < 10*rounds {
		t.Fatalf("busy writes: %d in %d rounds, %d lingered; want lingering rounds of 10 writes or more on average",
			writes, rounds, busy.Lingered-warm.Lingered)
	}

	time.Sleep(600 * time.Millisecond)
	start := time.Now()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("after-pause"), Value: []byte("q")}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if s := w.Stats(); s.Lingered != busy.Lingered || s.Rounds != busy.Rounds+1 {
		t.Fatalf("the write after a pause: %+v (before it %+v), want its own round without a linger", s, busy)
	}
	t.Logf("the write after the pause took %v", took)

	// Few writes of many records each (a processor's batches) turn it
	// busy too: the pace counts records.
	time.Sleep(600 * time.Millisecond)
	quiet := w.Stats()
	writeUntil(t, ctx, w, 2, time.Now().Add(1200*time.Millisecond), func(i, j int) []kafka.Message {
		msgs := make([]kafka.Message, 25)
		for k := range msgs {
			msgs[k] = kafka.Message{Key: []byte(fmt.Sprintf("batch-%d-%d-%d", i, j, k)), Value: []byte("b")}
		}
		return msgs
	})
	batches := w.Stats()
	t.Logf("2 writers of 25 records: %d writes in %d rounds, %d lingered", batches.Writes-quiet.Writes,
		batches.Rounds-quiet.Rounds, batches.Lingered-quiet.Lingered)
	if batches.Lingered == quiet.Lingered {
		t.Fatal("two writers of 25-record writes, thousands of records a second, never lingered")
	}
}

// writeUntil has writers goroutines write to w until stop, the i-th
// writer's j-th write being msgs(i, j), each waiting for its write before
// the next, and fails t on the first error.
func writeUntil(t *testing.T, ctx context.Context, w *kafkax.EagerWriter, writers int, stop time.Time,
	msgs func(i, j int) []kafka.Message) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			for j := 0; time.Now().Before(stop); j++ {
				if err := w.WriteMessages(ctx, msgs(i, j)...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestEagerWriterDropsAbandonedWrites: against a broker that accepts
// connections and never answers, a write whose caller gives up while an
// earlier round hangs is answered with its context's error and never sent;
// Close waits for the hung round and then returns.
func TestEagerWriterDropsAbandonedWrites(t *testing.T) {
	w := kafkax.NewEagerWriter(kafkax.WriterConfig{Brokers: []string{testenv.Blackhole(t)}, Topic: "hung",
		WriteTimeout: time.Second, MaxAttempts: 1})

	first := make(chan error, 1)
	go func() {
		first <- w.WriteMessages(context.Background(), kafka.Message{Key: []byte("a"), Value: []byte("a")})
	}()
	testenv.Eventually(t, 5*time.Second, func() error {
		if s := w.Stats(); s.Rounds != 1 {
			return fmt.Errorf("%+v: the first round has not begun", s)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("b"), Value: []byte("b")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned write: %v, want its deadline", err)
	}
	if err := <-first; err == nil {
		t.Fatal("the write to a broker that never answers succeeded")
	}
	if err := w.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if s := w.Stats(); s.Rounds != 1 || s.Dropped != 1 {
		t.Fatalf("%+v: want 1 round sent and the abandoned write dropped", s)
	}
	if err := w.WriteMessages(context.Background(), kafka.Message{Value: []byte("c")}); !errors.Is(err, kafkax.ErrWriterClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
