package provider_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
)

// BenchmarkReceiverPath is the receiver's CPU per delivery outside HTTP and
// Kafka: split a generic delivery (decode and validate every event) and
// build each raw record. ns/op is per delivery; reviews/s is per core.
func BenchmarkReceiverPath(b *testing.B) {
	for _, n := range []int{1, 10} {
		events := make([]string, n)
		for i := range events {
			events[i] = gen("g-" + strconv.Itoa(i))
		}
		body := []byte(events[0])
		if n > 1 {
			body = []byte(`{"events":[` + strings.Join(events, ",") + `]}`)
		}
		at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
		b.Run(strconv.Itoa(n)+"-per-delivery", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				changes, err := provider.Generic{}.Split(body)
				if err != nil || len(changes) != n {
					b.Fatalf("split: %d changes, %v", len(changes), err)
				}
				for i, c := range changes {
					raw := envelope.Raw{EventID: envelope.EventID("generic", "msg_1", i), Provider: "generic",
						Source: envelope.SourceWebhook, ReceivedAt: at, DeliveryID: "msg_1", Payload: c.Payload}
					if _, err := raw.Message(c.ReviewID, at); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "reviews/s")
		})
	}
}
