package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap/zaptest"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// The state of input partition n goes to changelog partition n, whatever
// its keys hash to, and comes back whole on restore.
func TestChangelogWriteAndRestore(t *testing.T) {
	st := testenv.New(t)
	w, closeWriters := NewWriters(st.Brokers, st.Names)
	defer closeWriters()
	p, err := New(Config{Brokers: st.Brokers, Names: st.Names, RestoreStall: 10 * time.Second}, provider.Default(),
		func() (Writers, func() error) { return w, func() error { return nil } },
		zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.checkTopics(ctx); err != nil {
		t.Fatal(err)
	}

	const partition = 4
	store := dedupe.NewMemStore(0)
	wk := &worker{p: p, partition: partition, out: w, store: store, overlay: dedupe.NewOverlay(store)}
	want := map[string]dedupe.Entry{}
	for i := range 300 {
		key := fmt.Sprintf("generic:c%03d", i)
		e := dedupe.Entry{Version: int64(i%5 + 1), Deleted: i%7 == 0, Offset: int64(i)}
		e.Hash[0], e.Hash[15] = byte(i), byte(i>>8)
		dedupe.Apply(wk.overlay, key, e, 0)
		want[key] = e
	}
	if err := wk.writeChangelog(ctx); err != nil {
		t.Fatal(err)
	}
	// A later batch updates some keys; a null value forgets one; garbage
	// is skipped.
	wk.overlay.Commit()
	for i := range 10 {
		key := fmt.Sprintf("generic:c%03d", i)
		e := want[key]
		e.Version += 10
		e.Offset = int64(1000 + i)
		dedupe.Apply(wk.overlay, key, e, 0)
		want[key] = e
	}
	if err := wk.writeChangelog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Changelog.WriteMessages(ctx,
		kafka.Message{Partition: partition, Key: []byte("generic:c299")},
		kafka.Message{Partition: partition, Key: []byte("generic:garbage"), Value: []byte("{")},
	); err != nil {
		t.Fatal(err)
	}
	delete(want, "generic:c299")

	recs := readAll(t, st.Brokers, st.Topic(kafkax.TopicProcessorState))
	if len(recs) != 300+10+2 {
		t.Fatalf("%d changelog records, want %d", len(recs), 312)
	}
	for _, m := range recs {
		if m.Partition != partition {
			t.Fatalf("changelog record %s on partition %d, want %d", m.Key, m.Partition, partition)
		}
	}
	var sample dedupe.Entry
	if err := json.Unmarshal(recs[0].Value, &sample); err != nil || sample.Offset != 0 {
		t.Fatalf("changelog value %s: %v", recs[0].Value, err)
	}

	restored := dedupe.NewMemStore(0)
	n, err := p.restore(ctx, partition, restored)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(recs) || restored.Len() != len(want) {
		t.Fatalf("restore read %d records into %d keys, want %d records, %d keys", n, restored.Len(), len(recs), len(want))
	}
	for k, e := range want {
		if got, ok := restored.Get(k); !ok || got != e {
			t.Fatalf("%s restored as %+v, want %+v", k, got, e)
		}
	}
	empty := dedupe.NewMemStore(0)
	if n, err := p.restore(ctx, partition+1, empty); err != nil || n != 0 || empty.Len() != 0 {
		t.Fatalf("restore of an empty partition: %d records, %v", n, err)
	}
}

// The processor refuses to start when the changelog has fewer partitions
// than the input: state would have nowhere to go.
func TestCheckTopicsCoPartitioning(t *testing.T) {
	st := testenv.New(t)
	names := kafkax.Names{Namespace: "t" + testenv.RandomID() + "."}
	specs := []kafkax.TopicSpec{
		{Topic: kafkax.TopicRaw, Partitions: 4, Retention: time.Hour},
		{Topic: kafkax.TopicProcessorState, Partitions: 2, Compact: true, Retention: -1},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkax.EnsureTopics(ctx, st.Brokers, names, specs, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kafkax.DeleteTopics(context.Background(), st.Brokers, names, specs) })
	p, err := New(Config{Brokers: st.Brokers, Names: names}, provider.Default(), func() (Writers, func() error) {
		return NewWriters(st.Brokers, names)
	}, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err == nil || !strings.Contains(err.Error(), "has 2 partitions") {
		t.Fatalf("Run with a changelog of 2 partitions for 4 input partitions: %v", err)
	}
}
