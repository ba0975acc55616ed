package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
)

// endOffsets returns the end offset of every partition of topic.
func (e *env) endOffsets(ctx context.Context, topic string, partitions int) (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := kafkax.EndOffsets(ctx, e.brokers, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	if len(out) != partitions {
		return nil, fmt.Errorf("end offsets of %s: %d of %d partitions", topic, len(out), partitions)
	}
	return out, nil
}

// lag is the processor group's lag on reviews.raw.v1 (committed offsets in
// Kafka) and the sink's on reviews.normalized.v1 (offsets stored in
// PostgreSQL with the rows), summed over partitions.
func (e *env) lag(ctx context.Context) (processor, sink int64, err error) {
	n := kafkax.DefaultPartitions
	raw := e.names.Topic(kafkax.TopicRaw)
	rawEnd, err := e.endOffsets(ctx, raw, n)
	if err != nil {
		return 0, 0, err
	}
	c, done := kafkax.NewAdminClient(e.brokers, 5*time.Second)
	defer done()
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: e.names.Group(kafkax.GroupProcessor),
		Topics: map[string][]int{raw: parts}})
	if err != nil {
		return 0, 0, fmt.Errorf("processor offsets: %w", err)
	}
	if res.Error != nil {
		return 0, 0, fmt.Errorf("processor offsets: %w", res.Error)
	}
	committed := map[int]int64{}
	for _, p := range res.Topics[raw] {
		if p.Error != nil {
			return 0, 0, fmt.Errorf("processor offset of %d: %w", p.Partition, p.Error)
		}
		committed[p.Partition] = max(p.CommittedOffset, 0)
	}
	for p, end := range rawEnd {
		processor += end - committed[p]
	}
	// The normalized topic's end offsets are read after the processor's
	// commits: once the processor's lag is 0, they include its outputs.
	sink, err = e.storedLag(ctx, e.names.Group(kafkax.GroupSink))
	if err != nil {
		return 0, 0, err
	}
	return processor, sink, nil
}

// storedLag is the lag on reviews.normalized.v1 of a consumer that keeps
// its offsets in PostgreSQL's consumer_offsets (the sink, analytics),
// summed over partitions.
func (e *env) storedLag(ctx context.Context, consumer string) (int64, error) {
	norm := e.names.Topic(kafkax.TopicNormalized)
	end, err := e.endOffsets(ctx, norm, kafkax.DefaultPartitions)
	if err != nil {
		return 0, err
	}
	stored, err := pgoffsets.Load(ctx, e.db, consumer, norm)
	if err != nil {
		return 0, err
	}
	var lag int64
	for p, o := range end {
		lag += o - stored[p].Next
	}
	return lag, nil
}

// settle waits until the processor's and the sink's lags are 0, and those
// of the other consumers named (offsets in PostgreSQL, as analytics keeps
// them), up to limit, and returns how long it took.
func (e *env) settle(t *testing.T, limit time.Duration, consumers ...string) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, s, err := e.lag(ctx)
		others := int64(0)
		for _, c := range consumers {
			if err != nil {
				break
			}
			var l int64
			l, err = e.storedLag(ctx, c)
			others += l
		}
		cancel()
		if err == nil && p == 0 && s == 0 && others == 0 {
			return time.Since(start)
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("processor lag %d, sink lag %d, %v lag %d", p, s, consumers, others)
		}
		if time.Since(start) > limit {
			t.Fatalf("pipeline did not settle within %s: %s", limit, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// storeRows reads every row of the scenario's reviews table.
func (e *env) storeRows(ctx context.Context) (map[string]row, error) {
	rows, err := e.db.Query(ctx, `SELECT id, version, deleted, title FROM reviews`)
	if err != nil {
		return nil, fmt.Errorf("read reviews: %w", err)
	}
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var id string
		var r row
		if err := rows.Scan(&id, &r.version, &r.deleted, &r.title); err != nil {
			return nil, err
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("two rows for id %s", id)
		}
		out[id] = r
	}
	return out, rows.Err()
}

// check asserts the store against the model and logs the figures.
func (e *env) check(t *testing.T, m *model) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := e.storeRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	problems, ids := m.verify(rows)
	acked, unsure := m.counts()
	t.Logf("checked %d ids (%d rows): %d acknowledged changes, %d never acknowledged; %d problems",
		ids, len(rows), acked, unsure, len(problems))
	if acked == 0 {
		t.Errorf("no change was acknowledged: the scenario proved nothing")
	}
	reportProblems(t, problems, 30)
}

// reportProblems fails the test with the first limit problems, one error
// each, and the count of the rest.
func reportProblems(t *testing.T, problems []string, limit int) {
	t.Helper()
	for i, p := range problems {
		if i == limit {
			t.Errorf("... and %d more", len(problems)-limit)
			return
		}
		t.Error(p)
	}
}
