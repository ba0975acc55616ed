// Package deadletters reads, selects and redrives the dead letters of
// reviews.dlq.v1. It decides where a dead letter's record came from
// (Origin), whether today's code takes it and what redriving it sends
// (PlanRedrive), which dead letters a filter selects and which were
// redriven before; Redriver sends the plans at a bounded rate and records
// each in the ledger. Kafka and PostgreSQL come in behind small interfaces
// (Log, Sender, Ledger), so the decisions are tested without I/O.
package deadletters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// DeadLetter is one record of reviews.dlq.v1 with where it sits. Bad is set
// when the value is not a dead letter at all.
type DeadLetter struct {
	envelope.DeadLetter
	Partition int
	Offset    int64
	Bad       error
}

// Decode reads one record of reviews.dlq.v1; a value that is no dead
// letter comes back with Bad set. A dead letter without a key takes the
// record's.
func Decode(m *kafka.Message) DeadLetter {
	d := DeadLetter{Partition: m.Partition, Offset: m.Offset}
	if err := json.Unmarshal(m.Value, &d.DeadLetter); err != nil {
		d.Bad = fmt.Errorf("not a dead letter: %v", err)
	} else if d.ID == "" || d.Stage == "" {
		d.Bad = errors.New("not a dead letter: no id or stage")
	}
	if d.Key == "" {
		d.Key = string(m.Key)
	}
	return d
}

// SortByFailure orders dead letters by failure time, then by where they
// sit in reviews.dlq.v1.
func SortByFailure(ds []DeadLetter) {
	sort.SliceStable(ds, func(i, j int) bool {
		if !ds[i].FailedAt.Equal(ds[j].FailedAt) {
			return ds[i].FailedAt.Before(ds[j].FailedAt)
		}
		if ds[i].Partition != ds[j].Partition {
			return ds[i].Partition < ds[j].Partition
		}
		return ds[i].Offset < ds[j].Offset
	})
}

// Log is reviews.dlq.v1 as this package reads it (kafkalog.Client).
type Log interface {
	Snapshot(ctx context.Context, from, to time.Time) (kafkalog.Spans, error)
	Scan(ctx context.Context, ss kafkalog.Spans, fn func(*kafka.Message) error) error
}

// Read reads reviews.dlq.v1 from its first offsets up to the end offsets of
// the moment of the call, sorted by failure time; prog may be nil.
func Read(ctx context.Context, log Log, prog progress.Func) ([]DeadLetter, error) {
	if prog == nil {
		prog = progress.None
	}
	ss, err := log.Snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	p := prog("reading dead letters", "records", ss.Records())
	var (
		mu  sync.Mutex
		out []DeadLetter
	)
	err = log.Scan(ctx, ss, func(m *kafka.Message) error {
		d := Decode(m)
		mu.Lock()
		out = append(out, d)
		mu.Unlock()
		p.Add(1)
		return nil
	})
	p.Done()
	if err != nil {
		return nil, err
	}
	SortByFailure(out)
	return out, nil
}

// Filter selects dead letters by the list and redrive flags; an empty
// field selects all.
type Filter struct {
	Reasons, Stages, Providers, IDs []string
	// Since, when set, selects the dead letters that failed at or after it.
	Since *time.Time
}

// Match reports whether f selects d. A record that is no dead letter is
// selected only by an empty filter.
func (f *Filter) Match(d DeadLetter) bool {
	if d.Bad != nil {
		return len(f.Reasons) == 0 && len(f.Stages) == 0 && len(f.Providers) == 0 && len(f.IDs) == 0 && f.Since == nil
	}
	return (len(f.Reasons) == 0 || slices.Contains(f.Reasons, d.Reason)) &&
		(len(f.Stages) == 0 || slices.Contains(f.Stages, string(d.Stage))) &&
		(len(f.Providers) == 0 || slices.Contains(f.Providers, d.Provider)) &&
		(len(f.IDs) == 0 || slices.Contains(f.IDs, d.ID)) &&
		(f.Since == nil || !d.FailedAt.Before(*f.Since))
}

// Redrive is a dead letter's row in the dlq_redrives ledger: when it was
// redriven, to which topic, how many records, by whom.
type Redrive struct {
	At      time.Time `json:"redriven_at"`
	Topic   string    `json:"target_topic"`
	Records int       `json:"records"`
	By      string    `json:"redriven_by"`
}

// ListItem is one dead letter in `dlq list --json`: the dead letter
// without its record (see `dlq show`), where it sits, and its redrive.
type ListItem struct {
	ID             string            `json:"id"`
	Stage          envelope.Stage    `json:"stage"`
	Reason         string            `json:"reason"`
	Error          string            `json:"error"`
	FailedAt       time.Time         `json:"failed_at"`
	Provider       string            `json:"provider,omitempty"`
	Topic          string            `json:"topic,omitempty"`
	Partition      *int              `json:"partition,omitempty"`
	Offset         *int64            `json:"offset,omitempty"`
	Key            string            `json:"key,omitempty"`
	RecordEncoding string            `json:"record_encoding"`
	RecordBytes    int               `json:"record_bytes"`
	Headers        map[string]string `json:"headers,omitempty"`
	DLQPartition   int               `json:"dlq_partition"`
	DLQOffset      int64             `json:"dlq_offset"`
	Redriven       *Redrive          `json:"redriven,omitempty"`
	// FailedAgain is set when this record failed after its redrive.
	FailedAgain bool   `json:"failed_again,omitempty"`
	Unreadable  string `json:"unreadable,omitempty"`
}

// ItemOf is d as a list shows it, with its row of the ledger led if any.
func ItemOf(d DeadLetter, led map[string]Redrive) ListItem {
	it := ListItem{
		ID: d.ID, Stage: d.Stage, Reason: d.Reason, Error: d.Error, FailedAt: d.FailedAt, Provider: d.Provider,
		Topic: d.Topic, Partition: d.DeadLetter.Partition, Offset: d.DeadLetter.Offset, Key: d.Key,
		RecordEncoding: d.RecordEncoding, RecordBytes: len(d.RecordBytes()), Headers: d.Headers,
		DLQPartition: d.Partition, DLQOffset: d.Offset,
	}
	if d.Bad != nil {
		it.Unreadable = d.Bad.Error()
	}
	if r, ok := led[d.ID]; ok {
		it.Redriven = &r
		it.FailedAgain = d.FailedAt.After(r.At)
	}
	return it
}
