package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// repairOutcome says what --apply did.
type repairOutcome struct {
	Sent int `json:"sent"`
	// Repaired are the reviews the store shows as the log has them after
	// the repair; NotRepaired those it did not within the wait.
	Repaired    int        `json:"repaired"`
	NotRepaired []*finding `json:"not_repaired"`
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
// version removes a review, CONTRACT §3). It returns the messages by review
// id, each with the entry the store must show once it applied it.
func repairMessages(ctx context.Context, lc *logClient, reg *provider.Registry, fs []*finding, now time.Time) ([]kafka.Message, map[string]slot, error) {
	byPart := map[int][]int64{}
	want := map[int]map[int64]*finding{}
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
			want[f.partition] = map[int64]*finding{}
		}
		want[f.partition][f.offset] = f
	}
	parts := make([]int, 0, len(byPart))
	for p := range byPart {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	for _, p := range parts {
		err := lc.fetch(ctx, p, byPart[p], func(m *kafka.Message) error {
			f := want[p][m.Offset]
			ev, _, err := normalizeRecord(reg, m, now)
			if err != nil {
				return fmt.Errorf("%s: the record at %s/%d offset %d no longer normalizes: %w", f.ID, lc.topic, p, m.Offset, err)
			}
			if !dedupe.EntryOf(ev, m.Offset).SameChange(f.exp.e) {
				return fmt.Errorf("%s: the record at %s/%d offset %d is not the change the fold chose", f.ID, lc.topic, p, m.Offset)
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
			return nil, nil, fmt.Errorf("%d records of %s/%d could not be read again (retention?)", n, lc.topic, p)
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

// sendRepairs writes the repair records to reviews.normalized.v1 (acks=all).
func sendRepairs(ctx context.Context, s settings, msgs []kafka.Message, o IO) error {
	w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: s.topic(kafkax.TopicNormalized)})
	defer w.Close()
	prog := startProgress(o.Err, "sending repairs", "events", int64(len(msgs)))
	defer prog.Done()
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := w.WriteMessages(ctx, msgs[:n]...); err != nil {
			return fmt.Errorf("write repairs to %s: %w", w.Topic, err)
		}
		prog.Add(int64(n))
		msgs = msgs[n:]
	}
	return nil
}

// awaitRepairs polls the store until every target review shows its target
// entry (same change, or a later one that the pipeline brought meanwhile),
// or timeout passes. It returns the ids still not showing it.
func awaitRepairs(ctx context.Context, db *pgxpool.Pool, target map[string]slot, timeout time.Duration, o IO) (map[string]bool, error) {
	pending := make(map[string]bool, len(target))
	for id := range target {
		pending[id] = true
	}
	prog := startProgress(o.Err, "waiting for the store", "reviews", int64(len(target)))
	defer prog.Done()
	deadline := time.Now().Add(timeout)
	for {
		ids := make([]string, 0, len(pending))
		for id := range pending {
			ids = append(ids, id)
		}
		for len(ids) > 0 {
			n := min(len(ids), 5000)
			rows, err := db.Query(ctx, `SELECT `+rowColumns+` FROM reviews WHERE id = ANY($1)`, ids[:n])
			if err != nil {
				return nil, fmt.Errorf("read reviews: %w", err)
			}
			for rows.Next() {
				r, err := scanRow(rows)
				if err != nil {
					rows.Close()
					return nil, fmt.Errorf("read reviews: %w", err)
				}
				if reflects(r, target[r.ID]) {
					delete(pending, r.ID)
					prog.Add(1)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("read reviews: %w", err)
			}
			ids = ids[n:]
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			return pending, nil
		}
		if err := sleepCtx(ctx, pollEvery); err != nil {
			return nil, err
		}
	}
}

// reflects reports whether row shows the change of sl, or one that
// outranks it (a newer change that reached the store meanwhile).
func reflects(r *storeRow, sl slot) bool {
	if classify(&sl, r).kind == "" {
		return true
	}
	return r.entry().Compare(sl.e) > 0
}
