package cli

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

// pollEvery is how often reconcile looks again while it waits for the
// pipeline (settle) or for the store to show its repairs.
var pollEvery = 200 * time.Millisecond

// settle waits, up to timeout, until the pipeline has carried the snapshot
// into the store: the processor group's committed offsets on reviews.raw.v1
// reach the snapshot's end offsets, then the sink's offsets on
// reviews.normalized.v1 (its consumer_offsets rows) reach that topic's end
// offsets of that moment. Without it, changes still on their way would be
// reported as drift. A pipeline that has no committed offsets at all (not
// running against these topics) is not waited for. It returns notes for the
// report; it fails only when ctx ends.
func settle(ctx context.Context, s settings, db *pgxpool.Pool, raw spans, timeout time.Duration) ([]string, error) {
	if timeout <= 0 {
		return []string{"did not wait for the pipeline (--settle 0): changes on their way may show as drift"}, nil
	}
	deadline := time.Now().Add(timeout)
	rawTopic := s.topic(kafkax.TopicRaw)
	group := s.names.Group(kafkax.GroupProcessor)
	cl := &kafka.Client{Addr: kafka.TCP(s.Brokers...), Timeout: 10 * time.Second}
	parts := make([]int, len(raw))
	for i, sp := range raw {
		parts[i] = sp.Partition
	}
	behind := func() (lag int64, known bool, err error) {
		res, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{rawTopic: parts}})
		if err != nil {
			return 0, false, err
		}
		committed := map[int]int64{}
		for _, p := range res.Topics[rawTopic] {
			if p.Error == nil && p.CommittedOffset >= 0 {
				committed[p.Partition] = p.CommittedOffset
				known = true
			}
		}
		for _, sp := range raw {
			if c, ok := committed[sp.Partition]; !ok || c < sp.To {
				lag += sp.To - max(c, 0)
			}
		}
		return lag, known, nil
	}
	var notes []string
	for {
		lag, known, err := behind()
		if err != nil {
			notes = append(notes, fmt.Sprintf("could not read the processor's offsets (%v): did not wait for it", err))
			break
		}
		if !known {
			notes = append(notes, fmt.Sprintf("the processor group %s has no committed offsets on %s: did not wait for it", group, rawTopic))
			break
		}
		if lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			return append(notes, fmt.Sprintf("the processor is %d records behind the snapshot after waiting %s: those changes may show as drift", lag, timeout)), nil
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return notes, err
		}
	}
	normTopic := s.topic(kafkax.TopicNormalized)
	sinkGroup := s.names.Group(kafkax.GroupSink)
	norm, err := newLogClient(s.Brokers, normTopic).snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		return append(notes, fmt.Sprintf("could not read the end offsets of %s (%v): did not wait for the sink", normTopic, err)), nil
	}
	for {
		rows, err := db.Query(ctx, `SELECT partition, next_offset FROM consumer_offsets WHERE consumer = $1 AND topic = $2`,
			sinkGroup, normTopic)
		if err != nil {
			return append(notes, fmt.Sprintf("could not read the sink's offsets (%v): did not wait for it", err)), nil
		}
		done := map[int]int64{}
		for rows.Next() {
			var p int
			var off int64
			if err := rows.Scan(&p, &off); err == nil {
				done[p] = off
			}
		}
		rows.Close()
		if len(done) == 0 {
			return append(notes, fmt.Sprintf("the sink (%s) has no offsets for %s in consumer_offsets: did not wait for it", sinkGroup, normTopic)), nil
		}
		var lag int64
		for _, sp := range norm {
			if sp.To > sp.From && done[sp.Partition] < sp.To {
				lag += sp.To - max(done[sp.Partition], sp.From)
			}
		}
		if lag == 0 {
			return notes, nil
		}
		if time.Now().After(deadline) {
			return append(notes, fmt.Sprintf("the sink is %d records behind after waiting %s: those changes may show as drift", lag, timeout)), nil
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return notes, err
		}
	}
}

// excludeInFlight reads the raw log past the snapshot, up to its end now,
// and sets aside the drifted reviews that changed there: the store may
// already show those later changes, so they are neither drift nor in sync
// for this run (the next run judges them).
func excludeInFlight(ctx context.Context, lc *logClient, snap spans, d *diff) error {
	if d.drift() == 0 {
		return nil
	}
	now, err := lc.snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	ends := map[int]int64{}
	for _, s := range snap {
		ends[s.Partition] = s.To
	}
	var tail spans
	for _, s := range now {
		from, ok := ends[s.Partition]
		if !ok {
			from = s.From // a partition added since the snapshot
		}
		if s.To > from {
			tail = append(tail, span{Partition: s.Partition, From: from, To: s.To})
		}
	}
	if len(tail) == 0 {
		return nil
	}
	want := make(map[string]bool, len(d.findings))
	for _, f := range d.findings {
		want[f.ID] = true
	}
	var mu sync.Mutex
	touched := map[string]bool{}
	err = lc.scan(ctx, tail, scanConfig{}, func(m *kafka.Message) error {
		if want[string(m.Key)] {
			mu.Lock()
			touched[string(m.Key)] = true
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(touched) == 0 {
		return nil
	}
	kept := d.findings[:0]
	for _, f := range d.findings {
		if touched[f.ID] {
			d.counts[f.Kind]--
			d.inFlight++
			continue
		}
		kept = append(kept, f)
	}
	d.findings = kept
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
