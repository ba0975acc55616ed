package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// RepairOutcome says what --apply did.
type RepairOutcome struct {
	Sent int `json:"sent"`
	// Repaired are the reviews the store shows as the log has them after
	// the repair; NotRepaired those it did not within the wait.
	Repaired    int        `json:"repaired"`
	NotRepaired []*Finding `json:"not_repaired"`
	WaitedFor   string     `json:"waited"`
}

// repairEventID derives a repair's event id from the review and the change
// it restores, so repeated repairs of one drift carry the same id.
func repairEventID(id string, e dedupe.Entry) string {
	h := sha256.Sum256([]byte("repair\x00" + id + "\x00" + strconv.FormatInt(e.Version, 10) + "\x00" +
		strconv.FormatBool(e.Deleted) + "\x00" + e.HashString()))
	return "evt_" + hex.EncodeToString(h[:12])
}

// repairMessages builds the reviews.normalized.v1 records that repair the
// repairable findings: the log's winning change, read again from
// reviews.raw.v1 at the offset the fold kept and normalized as the
// processor does, marked Repair with the header repair: true and the raw
// record's source and accepted-at; for a review with no valid event in the
// log, a delete at the row's version (a delete at or above the current
// version removes a review, docs/contract.md §3). It returns the messages by review
// id, each with the entry the store must show once it applied it.
func repairMessages(ctx context.Context, log Log, reg *provider.Registry, fs []*Finding, now time.Time) ([]kafka.Message, map[string]slot, error) {
	byPart := map[int][]int64{}
	want := map[int]map[int64]*Finding{}
	var msgs []kafka.Message
	target := map[string]slot{}
	for _, f := range fs {
		if f.partition < 0 {
			r := f.row
			ev := review.Event{Op: review.OpDelete, Repair: true, Review: review.Review{
				ID: r.ID, Provider: r.Provider, ExternalID: r.ExternalID, MovieID: r.MovieID,
				Version: r.Version, SourceUpdatedAt: r.SourceUpdatedAt, IngestedAt: now.UTC(),
			}}
			m, err := repairMessage(ev, nil, now)
			if err != nil {
				return nil, nil, err
			}
			msgs = append(msgs, m)
			e := dedupe.EntryOf(ev, -1)
			target[r.ID] = slot{e: e, visible: e.Hash}
			continue
		}
		byPart[f.partition] = append(byPart[f.partition], f.offset)
		if want[f.partition] == nil {
			want[f.partition] = map[int64]*Finding{}
		}
		want[f.partition][f.offset] = f
	}
	parts := make([]int, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	for _, p := range parts {
		err := log.Fetch(ctx, p, byPart[p], func(m *kafka.Message) error {
			f := want[p][m.Offset]
			ev, _, err := normalize(reg, m, now)
			if err != nil {
				return fmt.Errorf("%s: the record at %s/%d offset %d no longer normalizes: %w", f.ID, log.Topic(), p, m.Offset, err)
			}
			if !dedupe.EntryOf(ev, m.Offset).SameChange(f.exp.e) {
				return fmt.Errorf("%s: the record at %s/%d offset %d is not the change the fold chose", f.ID, log.Topic(), p, m.Offset)
			}
			ev.Repair = true
			out, err := repairMessage(ev, m, now)
			if err != nil {
				return err
			}
			msgs = append(msgs, out)
			target[f.ID] = f.exp
			delete(want[p], m.Offset)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if n := len(want[p]); n > 0 {
			return nil, nil, fmt.Errorf("%d records of %s/%d could not be read again (retention?)", n, log.Topic(), p)
		}
	}
	return msgs, target, nil
}

// repairMessage is the normalized record of a repair event; raw is the raw
// record it restores, or nil.
func repairMessage(ev review.Event, raw *kafka.Message, now time.Time) (kafka.Message, error) {
	v, err := ev.Marshal()
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode repair of %s: %w", ev.Review.ID, err)
	}
	m := kafka.Message{Key: []byte(ev.Review.ID), Value: v, Headers: []kafka.Header{
		{Key: kafkax.HeaderEventID, Value: []byte(repairEventID(ev.Review.ID, dedupe.EntryOf(ev, -1)))},
		{Key: kafkax.HeaderRepair, Value: []byte("true")},
	}}
	accepted := now.UTC().Format(time.RFC3339Nano)
	if raw != nil {
		if src := envelope.Header(*raw, kafkax.HeaderSource); src != "" {
			m.Headers = append(m.Headers, kafka.Header{Key: kafkax.HeaderSource, Value: []byte(src)})
		}
		if a := envelope.Header(*raw, kafkax.HeaderAccepted); a != "" {
			accepted = a
		}
	}
	m.Headers = append(m.Headers, kafka.Header{Key: kafkax.HeaderAccepted, Value: []byte(accepted)})
	return m, nil
}

// repair sends the log's change of every repairable finding through
// reviews.normalized.v1 and waits, up to wait, for the store to show them;
// it sets the report's repair outcome, notes and exit code.
func (r *Reconciler) repair(ctx context.Context, rep *Report, repairable, unrepairable []*Finding, wait time.Duration) error {
	msgs, target, err := repairMessages(ctx, r.Log, r.Providers, repairable, r.now())
	if err != nil {
		return fmt.Errorf("build repairs: %w", err)
	}
	if err := r.sendRepairs(ctx, msgs); err != nil {
		return err
	}
	waitStart := r.now()
	pending, err := r.awaitRepairs(ctx, target, wait)
	if err != nil {
		return err
	}
	out := &RepairOutcome{Sent: len(msgs), Repaired: len(target) - len(pending), NotRepaired: []*Finding{},
		WaitedFor: r.now().Sub(waitStart).Round(time.Millisecond).String()}
	for _, f := range repairable {
		if pending[f.ID] {
			out.NotRepaired = append(out.NotRepaired, f)
		}
	}
	rep.Repair = out
	if len(pending) > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d repairs were sent but the store did not show them within %s: is the sink running and caught up?", len(pending), wait))
	}
	if len(pending) == 0 && len(unrepairable) == 0 {
		rep.ExitCode = exitInSync
	} else {
		rep.ExitCode = exitDrift
	}
	return nil
}

// sendRepairs writes the repair records to reviews.normalized.v1 (acks=all).
func (r *Reconciler) sendRepairs(ctx context.Context, msgs []kafka.Message) error {
	prog := r.progress("sending repairs", "events", int64(len(msgs)))
	defer prog.Done()
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := r.Repairs.Write(ctx, kafkax.TopicNormalized, msgs[:n]...); err != nil {
			return fmt.Errorf("write repairs to %s: %w", r.Names.NormalizedTopic, err)
		}
		prog.Add(int64(n))
		msgs = msgs[n:]
	}
	return nil
}

// awaitRepairs polls the store until every target review shows its target
// entry (same change, or a later one that the pipeline brought meanwhile),
// or timeout passes. It returns the ids still not showing it.
func (r *Reconciler) awaitRepairs(ctx context.Context, target map[string]slot, timeout time.Duration) (map[string]bool, error) {
	pending := make(map[string]bool, len(target))
	for id := range target {
		pending[id] = true
	}
	prog := r.progress("waiting for the store", "reviews", int64(len(target)))
	defer prog.Done()
	deadline := r.now().Add(timeout)
	for {
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		for len(ids) > 0 {
			n := min(len(ids), lookupChunk)
			err := r.Store.RowsByID(ctx, ids[:n], func(row *Row) error {
				if reflects(row, target[row.ID]) {
					delete(pending, row.ID)
					prog.Add(1)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			ids = ids[n:]
		}
		if len(pending) == 0 || r.now().After(deadline) {
			return pending, nil
		}
		if err := r.sleep(ctx); err != nil {
			return nil, err
		}
	}
}

// reflects reports whether row shows the change of sl, or one that
// outranks it (a newer change that reached the store meanwhile).
func reflects(r *Row, sl slot) bool {
	if classify(&sl, r).kind == "" {
		return true
	}
	return r.entry().Compare(sl.e) > 0
}
