package deadletters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// Ledger is the dlq_redrives table and the lock that keeps one redrive per
// database (store.Ledger).
type Ledger interface {
	// Lock takes the redrive advisory lock; it returns a nil unlock when
	// another session holds it.
	Lock(ctx context.Context) (unlock func(), err error)
	// Redrives returns the ledger rows of the given dead-letter ids.
	Redrives(ctx context.Context, ids []string) (map[string]Redrive, error)
	// Record records p as redriven to topic (its full name) by by; a dead
	// letter recorded before stays as it was.
	Record(ctx context.Context, p Plan, topic, by string) error
}

// Sender writes records to a topic, acknowledged by every in-sync replica
// when it returns nil (kafkalog.Writers).
type Sender interface {
	Write(ctx context.Context, topic kafkax.Topic, msgs ...kafka.Message) error
}

// Report is the outcome of a redrive, as `dlq redrive --json` prints it.
type Report struct {
	DryRun          bool         `json:"dry_run"`
	Matched         int          `json:"matched"`
	Redriven        []Item       `json:"redriven"`
	Invalid         []Item       `json:"invalid"`
	AlreadyRedriven []Item       `json:"already_redriven"`
	Unreadable      []Unreadable `json:"unreadable,omitempty"`
}

// Item is one dead letter in a redrive's report.
type Item struct {
	ID          string     `json:"id"`
	Stage       string     `json:"stage"`
	Reason      string     `json:"reason"`
	Key         string     `json:"key,omitempty"`
	TargetTopic string     `json:"target_topic,omitempty"`
	Records     int        `json:"records,omitempty"`
	EventIDs    []string   `json:"event_ids,omitempty"`
	Error       string     `json:"error,omitempty"`
	StillReason string     `json:"still_invalid_reason,omitempty"`
	RedrivenAt  *time.Time `json:"redriven_at,omitempty"`
}

// Unreadable is a record of reviews.dlq.v1 that is no dead letter.
type Unreadable struct {
	Partition int    `json:"dlq_partition"`
	Offset    int64  `json:"dlq_offset"`
	Error     string `json:"error"`
}

// ErrLocked is Prepare's error when another redrive holds the lock.
var ErrLocked = errors.New("another `reviewctl dlq redrive` is running against this database; try again when it is done")

// Redriver redrives dead letters. Its fields are its dependencies, all
// required but Progress; not safe for concurrent use.
type Redriver struct {
	Log       Log
	Ledger    Ledger
	Sender    Sender
	Providers *provider.Registry
	// Names gives the topics' full names.
	Names kafkax.Names
	// Progress reports the long steps (default: none).
	Progress progress.Func
	// Operator names who ran it, for the ledger.
	Operator string
	// PerSecond bounds the records sent per second (0: no bound).
	PerSecond float64
}

// Batch is a prepared redrive: its report so far and the plans to send.
// Release lets go of the redrive lock; call it once done.
type Batch struct {
	Report  Report
	plans   []Plan
	release func()
}

// Release lets go of the lock Prepare took, if it took one.
func (b *Batch) Release() {
	if b.release != nil {
		b.release()
	}
}

// Prepare takes the redrive lock (unless dryRun), reads the dead letters,
// selects those f matches (each id once), sets aside those the ledger has
// as redriven and those still invalid with today's code, and plans the
// rest. With dryRun the report lists the plans as would-be redriven.
func (r *Redriver) Prepare(ctx context.Context, f Filter, dryRun bool) (*Batch, error) {
	b := &Batch{Report: Report{DryRun: dryRun, Redriven: []Item{}, Invalid: []Item{}, AlreadyRedriven: []Item{}}}
	if !dryRun {
		unlock, err := r.Ledger.Lock(ctx)
		if err != nil {
			return nil, err
		}
		if unlock == nil {
			return nil, ErrLocked
		}
		b.release = unlock
	}
	all, err := Read(ctx, r.Log, r.Progress)
	if err != nil {
		b.Release()
		return nil, fmt.Errorf("read %s: %w", r.Names.Topic(kafkax.TopicDLQ), err)
	}
	sel := b.selectFrom(all, f)
	ids := make([]string, len(sel))
	for i, d := range sel {
		ids[i] = d.ID
	}
	led, err := r.Ledger.Redrives(ctx, ids)
	if err != nil {
		b.Release()
		return nil, err
	}
	b.plan(sel, led, r.Providers)
	if dryRun {
		for _, p := range b.plans {
			b.Report.Redriven = append(b.Report.Redriven, r.itemOf(p))
		}
	}
	return b, nil
}

// selectFrom keeps the dead letters f matches, each id once (the same
// record failing the same way again has the same id); records that are no
// dead letter go to the report.
func (b *Batch) selectFrom(all []DeadLetter, f Filter) []envelope.DeadLetter {
	var sel []envelope.DeadLetter
	seen := map[string]bool{}
	for _, d := range all {
		if !f.Match(d) {
			continue
		}
		if d.Bad != nil {
			b.Report.Unreadable = append(b.Report.Unreadable, Unreadable{d.Partition, d.Offset, d.Bad.Error()})
			continue
		}
		if seen[d.ID] {
			continue
		}
		seen[d.ID] = true
		sel = append(sel, d.DeadLetter)
	}
	b.Report.Matched = len(sel)
	return sel
}

// plan sorts the selected dead letters into redriven before (led has
// them), still invalid, and plans to send.
func (b *Batch) plan(sel []envelope.DeadLetter, led map[string]Redrive, reg *provider.Registry) {
	for _, d := range sel {
		if r, ok := led[d.ID]; ok {
			at := r.At
			b.Report.AlreadyRedriven = append(b.Report.AlreadyRedriven, Item{ID: d.ID, Stage: string(d.Stage), Reason: d.Reason,
				Key: d.Key, TargetTopic: r.Topic, Records: r.Records, RedrivenAt: &at})
			continue
		}
		p := PlanRedrive(d, reg)
		if p.Invalid != nil {
			b.Report.Invalid = append(b.Report.Invalid, Item{ID: d.ID, Stage: string(d.Stage), Reason: d.Reason, Key: d.Key,
				Error: p.Invalid.Error(), StillReason: p.InvalidReason})
			continue
		}
		b.plans = append(b.plans, p)
	}
}

// Send writes each plan's records to its topic at PerSecond and records it
// in the ledger once Kafka acknowledged them, adding it to the report's
// Redriven. A crash between the two re-sends that dead letter on the next
// run; the processor's and the sink's idempotence absorb the repeat. A dry
// run's batch sends nothing. It returns the first error; what was sent and
// recorded before it stays in the report.
func (r *Redriver) Send(ctx context.Context, b *Batch) error {
	if b.Report.DryRun || len(b.plans) == 0 {
		return nil
	}
	total := 0
	for _, p := range b.plans {
		total += len(p.Messages)
	}
	prog := r.progress()("redrive", "records", int64(total))
	defer prog.Done()
	pace := newPacer(r.PerSecond)
	for _, p := range b.plans {
		topic := r.Names.Topic(p.Target)
		for _, m := range p.Messages {
			if err := pace.wait(ctx); err != nil {
				return err
			}
			if err := r.Sender.Write(ctx, p.Target, m); err != nil {
				return fmt.Errorf("write %s to %s: %w", p.DeadLetter.ID, topic, err)
			}
			prog.Add(1)
		}
		if err := r.Ledger.Record(ctx, p, topic, r.Operator); err != nil {
			return fmt.Errorf("record the redrive of %s (its records were sent): %w", p.DeadLetter.ID, err)
		}
		b.Report.Redriven = append(b.Report.Redriven, r.itemOf(p))
	}
	return nil
}

func (r *Redriver) itemOf(p Plan) Item {
	return Item{ID: p.DeadLetter.ID, Stage: string(p.DeadLetter.Stage), Reason: p.DeadLetter.Reason, Key: p.DeadLetter.Key,
		TargetTopic: r.Names.Topic(p.Target), Records: len(p.Messages), EventIDs: p.EventIDs}
}

func (r *Redriver) progress() progress.Func {
	if r.Progress == nil {
		return progress.None
	}
	return r.Progress
}

// pacer spaces events at most perSecond apart on average, with no burst.
type pacer struct {
	every time.Duration
	next  time.Time
}

func newPacer(perSecond float64) *pacer {
	if !(perSecond > 0) {
		return &pacer{}
	}
	return &pacer{every: time.Duration(float64(time.Second) / perSecond)}
}

// wait blocks until the next event may go, or ctx ends.
func (p *pacer) wait(ctx context.Context) error {
	if p.every <= 0 {
		return ctx.Err()
	}
	now := time.Now()
	if p.next.After(now) {
		t := time.NewTimer(p.next.Sub(now))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		now = p.next
	}
	p.next = now.Add(p.every)
	return nil
}
