package load

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// KafkaCeiling writes the raw events the receiver would write for the same
// deliveries (k per WriteMessages call, from workers goroutines) straight
// into topic with the project's writer (kafkax.NewWriter: acks=all,
// murmur2), for d, and returns records acknowledged per second: what Kafka
// and kafka-go allow without HTTP, signatures or parsing.
func KafkaCeiling(ctx context.Context, brokers []string, topic string, k, workers int, d time.Duration) (float64, error) {
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: brokers, Topic: topic})
	defer w.Close()
	return ceilingLoop(ctx, workers, d, func(ctx context.Context, n int) (int64, error) {
		now := time.Now()
		body, ids := Body("ceiling", n, k, now)
		msgs, err := rawMessages(body, ids, k, n, now)
		if err != nil {
			return 0, err
		}
		return int64(k), w.WriteMessages(ctx, msgs...)
	})
}

// ceilingLoop runs step from workers goroutines for d, each call with the
// next sequence number and a context that outlives d (a call started in
// time completes), and returns the units step reported done per second.
// The first error stops its worker and is returned with the rate.
func ceilingLoop(ctx context.Context, workers int, d time.Duration, step func(ctx context.Context, n int) (int64, error)) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done, next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				units, err := step(context.WithoutCancel(ctx), int(next.Add(1)-1))
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(units)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), firstErr
}

// rawMessages builds the receiver's records for a delivery body.
func rawMessages(body []byte, ids []string, k, n int, now time.Time) ([]kafka.Message, error) {
	var events []json.RawMessage
	if k == 1 {
		events = []json.RawMessage{body}
	} else {
		var d struct {
			Events []json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, err
		}
		events = d.Events
	}
	delivery := "ceiling-" + strconv.Itoa(n)
	msgs := make([]kafka.Message, len(events))
	for i, ev := range events {
		raw := envelope.Raw{
			EventID: envelope.EventID("generic", delivery, i), Provider: "generic", Source: envelope.SourceWebhook,
			ReceivedAt: now.UTC(), DeliveryID: delivery, Payload: ev,
		}
		m, err := raw.Message(ids[i][len("generic:"):], now)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	return msgs, nil
}

// PostgresCeiling upserts rows shaped like the sink's (the same columns,
// values and version guard, UNNEST batches of batch rows) into a copy of
// the reviews table, from workers connections, for d, and returns rows
// committed per second: what PostgreSQL allows without Kafka or the sink.
func PostgresCeiling(ctx context.Context, db *pgxpool.Pool, batch, workers int, d time.Duration) (float64, error) {
	if _, err := db.Exec(ctx, `DROP TABLE IF EXISTS bench_ceiling; CREATE TABLE bench_ceiling (LIKE reviews INCLUDING ALL)`); err != nil {
		return 0, fmt.Errorf("ceiling table: %w", err)
	}
	return ceilingLoop(ctx, workers, d, func(ctx context.Context, n int) (int64, error) {
		return int64(batch), upsertBatch(ctx, db, n, batch)
	})
}

func upsertBatch(ctx context.Context, db *pgxpool.Pool, n, batch int) error {
	cols := make([][]any, 16)
	now := time.Now().UTC()
	for j := range batch {
		seq := n*batch + j
		m := seq % Movies
		v := []any{
			"generic:ceiling-" + strconv.Itoa(seq), "generic", "ceiling-" + strconv.Itoa(seq), MovieID(m),
			"Bench Reader " + strconv.Itoa(seq%97), int16((1 + seq%10) * 10), "A review of some length",
			"The pacing drags in the second act, but the ending earns its keep; the score carries scenes the script cannot, and the lead gives the part more than it asks for.",
			"en", "https://example.com/r/" + strconv.Itoa(seq), int64(1), false, fmt.Sprintf("%064x", seq), now, now, now,
		}
		for c := range cols {
			cols[c] = append(cols[c], v[c])
		}
	}
	_, err := db.Exec(ctx, `INSERT INTO bench_ceiling AS r (id, provider, external_id, movie_id, author, rating, title, body,
			language, url, version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, committed_at)
		SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[],
			$8::text[], $9::text[], $10::text[], $11::bigint[], $12::boolean[], $13::text[], $14::timestamptz[],
			$15::timestamptz[], $16::timestamptz[])
		ON CONFLICT (id) DO UPDATE SET author = excluded.author, rating = excluded.rating, title = excluded.title,
			body = excluded.body, version = excluded.version, deleted = excluded.deleted, content_hash = excluded.content_hash,
			source_updated_at = excluded.source_updated_at, ingested_at = excluded.ingested_at,
			accepted_at = excluded.accepted_at, committed_at = excluded.committed_at
		WHERE excluded.version > r.version`, typed(cols)...)
	if err != nil {
		return fmt.Errorf("ceiling upsert: %w", err)
	}
	return nil
}

// typed turns each column of values into a typed slice pgx can encode.
func typed(cols [][]any) []any {
	out := make([]any, len(cols))
	for i, c := range cols {
		switch c[0].(type) {
		case string:
			out[i] = column[string](c)
		case int16:
			out[i] = column[int16](c)
		case int64:
			out[i] = column[int64](c)
		case bool:
			out[i] = column[bool](c)
		case time.Time:
			out[i] = column[time.Time](c)
		}
	}
	return out
}

// column converts one column of values, all of type T, to a []T.
func column[T any](c []any) []T {
	s := make([]T, len(c))
	for j, v := range c {
		s[j] = v.(T)
	}
	return s
}
