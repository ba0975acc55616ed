package batch

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// BenchmarkDecode is the sink's CPU per record before PostgreSQL: decode a
// reviews.normalized.v1 record, check it and hash its content.
func BenchmarkDecode(b *testing.B) {
	r := rv("a", 2, "The title")
	r.Body = "A body of a few sentences, as reviews have. It was better than I expected, and the ending stays with you."
	v, err := review.Event{Op: review.OpUpsert, Review: r}.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	m := kafka.Message{Offset: 7, Key: []byte(r.ID), Value: v, Headers: []kafka.Header{
		{Key: kafkax.HeaderAccepted, Value: []byte(t0.Add(time.Second).Format(time.RFC3339Nano))},
		{Key: kafkax.HeaderEventID, Value: []byte("evt_1")}}}
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, err := Decode(m, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reviews/s")
}
