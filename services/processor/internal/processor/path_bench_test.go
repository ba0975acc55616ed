package processor

import (
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/jsonx"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// BenchmarkProcessorPath is the processor's CPU per review outside Kafka:
// decode the raw record and normalize its payload, decide against keyed
// state, and encode the normalized record and the changelog entry.
func BenchmarkProcessorPath(b *testing.B) {
	p := &Processor{adapters: provider.Default()}
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	const keys = 1000
	msgs := make([]kafka.Message, keys)
	for i := range msgs {
		id := "r" + strconv.Itoa(i)
		msgs[i] = rawMessage(b, "generic", id, upsert(id, 1, 8), "evt_"+id)
	}
	state := dedupe.NewMemStore(keys)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := msgs[i%keys]
		i++
		r := p.normalizeOne(m, now)
		if r.failed() {
			b.Fatal(r.err)
		}
		state.Delete(r.event.Review.ID) // every review is new, as under load
		in := dedupe.EntryOf(r.event, m.Offset)
		if r.decision = dedupe.Apply(state, r.event.Review.ID, in, -1); !r.decision.Emit() {
			b.Fatalf("decision %v", r.decision)
		}
		if _, err := outputMessage(&r); err != nil {
			b.Fatal(err)
		}
		if _, err := jsonx.Marshal(in); err != nil { // the changelog value
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reviews/s")
}
