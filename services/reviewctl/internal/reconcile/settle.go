package reconcile

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
)

// settle waits, up to timeout, until the pipeline has carried the snapshot
// into the store: the processor group's committed offsets on reviews.raw.v1
// reach the snapshot's end offsets, then the sink's offsets on
// reviews.normalized.v1 (its consumer_offsets rows) reach that topic's end
// offsets of that moment. Without it, changes still on their way would be
// reported as drift. A pipeline that has no committed offsets at all (not
// running against these topics) is not waited for. It returns notes for the
// report; it fails only when ctx ends.
func (r *Reconciler) settle(ctx context.Context, raw kafkalog.Spans, timeout time.Duration) ([]string, error) {
	if timeout <= 0 {
		return []string{"did not wait for the pipeline (--settle 0): changes on their way may show as drift"}, nil
	}
	deadline := r.now().Add(timeout)
	var notes []string
	note, behind, err := r.awaitProcessor(ctx, raw, deadline, timeout)
	if note != "" {
		notes = append(notes, note)
	}
	if err != nil || behind {
		return notes, err
	}
	note, err = r.awaitSink(ctx, deadline, timeout)
	if note != "" {
		notes = append(notes, note)
	}
	return notes, err
}

// awaitProcessor waits until the processor's committed offsets reach raw's
// end offsets. It returns a note when it did not wait for it, or gave up;
// behind is true when the deadline passed first, so the sink is not waited
// for either.
func (r *Reconciler) awaitProcessor(ctx context.Context, raw kafkalog.Spans, deadline time.Time, timeout time.Duration) (note string, behind bool, err error) {
	rawTopic, group := r.Log.Topic(), r.Names.ProcessorGroup
	parts := make([]int, len(raw))
	for i, sp := range raw {
		parts[i] = sp.Partition
	}
	for {
		committed, err := r.Pipeline.ProcessorOffsets(ctx, parts)
		if err != nil {
			return fmt.Sprintf("could not read the processor's offsets (%v): did not wait for it", err), false, nil
		}
		if len(committed) == 0 {
			return fmt.Sprintf("the processor group %s has no committed offsets on %s: did not wait for it", group, rawTopic), false, nil
		}
		lag := processorLag(raw, committed)
		if lag == 0 {
			return "", false, nil
		}
		if r.now().After(deadline) {
			return fmt.Sprintf("the processor is %d records behind the snapshot after waiting %s: those changes may show as drift", lag, timeout), true, nil
		}
		if err := r.sleep(ctx); err != nil {
			return "", true, err
		}
	}
}

// awaitSink waits until the sink's offsets reach the end offsets that
// reviews.normalized.v1 has when it starts. It returns a note when it did
// not wait for the sink, or gave up.
func (r *Reconciler) awaitSink(ctx context.Context, deadline time.Time, timeout time.Duration) (string, error) {
	normTopic, group := r.Names.NormalizedTopic, r.Names.SinkGroup
	norm, err := r.Pipeline.NormalizedEnds(ctx)
	if err != nil {
		return fmt.Sprintf("could not read the end offsets of %s (%v): did not wait for the sink", normTopic, err), nil
	}
	for {
		done, err := r.Pipeline.SinkOffsets(ctx)
		if err != nil {
			return fmt.Sprintf("could not read the sink's offsets (%v): did not wait for it", err), nil
		}
		if len(done) == 0 {
			return fmt.Sprintf("the sink (%s) has no offsets for %s in consumer_offsets: did not wait for it", group, normTopic), nil
		}
		lag := sinkLag(norm, done)
		if lag == 0 {
			return "", nil
		}
		if r.now().After(deadline) {
			return fmt.Sprintf("the sink is %d records behind after waiting %s: those changes may show as drift", lag, timeout), nil
		}
		if err := r.sleep(ctx); err != nil {
			return "", err
		}
	}
}

// processorLag is how many records of raw the processor has not committed;
// a partition it committed nothing on counts whole.
func processorLag(raw kafkalog.Spans, committed map[int]int64) int64 {
	var lag int64
	for _, sp := range raw {
		if c, ok := committed[sp.Partition]; !ok || c < sp.To {
			lag += sp.To - max(c, 0)
		}
	}
	return lag
}

// sinkLag is how many records of norm the sink has not applied: next
// offsets are counted from each span's start (records below it are gone).
func sinkLag(norm kafkalog.Spans, next map[int]int64) int64 {
	var lag int64
	for _, sp := range norm {
		if sp.To > sp.From && next[sp.Partition] < sp.To {
			lag += sp.To - max(next[sp.Partition], sp.From)
		}
	}
	return lag
}

// excludeInFlight reads the raw log past the snapshot, up to its end now,
// and sets aside the drifted reviews that changed there: the store may
// already show those later changes, so they are neither drift nor in sync
// for this run (the next run judges them).
func excludeInFlight(ctx context.Context, log Log, snap kafkalog.Spans, d *diff) error {
	if d.drift() == 0 {
		return nil
	}
	now, err := log.Snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	tail := tailAfter(snap, now)
	if len(tail) == 0 {
		return nil
	}
	want := make(map[string]bool, len(d.findings))
	for _, f := range d.findings {
		want[f.ID] = true
	}
	var mu sync.Mutex
	touched := map[string]bool{}
	err = log.Scan(ctx, tail, func(m *kafka.Message) error {
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
	d.setAside(touched)
	return nil
}

// tailAfter returns the ranges of now past the end offsets of snap.
func tailAfter(snap, now kafkalog.Spans) kafkalog.Spans {
	ends := map[int]int64{}
	for _, s := range snap {
		ends[s.Partition] = s.To
	}
	var tail kafkalog.Spans
	for _, s := range now {
		from, ok := ends[s.Partition]
		if !ok {
			from = s.From // a partition added since the snapshot
		}
		if s.To > from {
			tail = append(tail, kafkalog.Span{Partition: s.Partition, From: from, To: s.To})
		}
	}
	return tail
}

// setAside moves the findings of the touched ids from drift to in flight.
func (d *diff) setAside(touched map[string]bool) {
	if len(touched) == 0 {
		return
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
}
