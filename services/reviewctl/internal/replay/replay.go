// Package replay re-publishes a window of reviews.raw.v1 as copies with
// source replay and event ids derived from the originals, so replaying a
// window twice yields the same ids and downstream deduplication leaves the
// store as it was. It decides which records are copied (Message) and
// publishes them in order per partition (Run); the log and the writer come
// in behind small interfaces.
package replay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/progress"
)

// EventID derives a replayed copy's event id from the original's, so
// replaying a window twice yields the same ids.
func EventID(original string) string {
	h := sha256.Sum256([]byte("replay\x00" + original))
	return "evt_" + hex.EncodeToString(h[:12])
}

// Stats counts what a replay did.
type Stats struct {
	Scanned    int64 `json:"scanned"`
	Published  int64 `json:"published"`
	OtherProv  int64 `json:"skipped_other_provider"`
	Replays    int64 `json:"skipped_earlier_replays"`
	Unreadable int64 `json:"skipped_unreadable"`
	Invalid    int64 `json:"skipped_invalid"`
}

// Why Message skips a record.
const (
	skipUnreadable = "unreadable"
	skipReplay     = "replay"
)

// Message builds the copy of a raw record that replay publishes: the same
// key and payload, source replay, a derived event id, the original's
// received_at and accepted-at (so freshness still counts from the first
// acceptance), and replay-of naming the original event. skip is set for a
// record that replay skips: "unreadable" (not a raw envelope) or "replay"
// (itself a copy of an event already in the log: replaying it again would
// only multiply copies).
func Message(m *kafka.Message) (out kafka.Message, raw envelope.Raw, skip string) {
	raw, err := envelope.ParseRaw(m.Value)
	if err != nil {
		return out, raw, skipUnreadable
	}
	if raw.Source == envelope.SourceReplay {
		return out, raw, skipReplay
	}
	orig := raw.EventID
	raw.EventID = EventID(orig)
	raw.Source = envelope.SourceReplay
	val, err := json.Marshal(raw)
	if err != nil {
		return out, raw, skipUnreadable
	}
	accepted := envelope.Header(*m, kafkax.HeaderAccepted)
	if accepted == "" {
		accepted = raw.ReceivedAt.UTC().Format(time.RFC3339Nano)
	}
	out = kafka.Message{
		Key:   bytes.Clone(m.Key),
		Value: val,
		Headers: []kafka.Header{
			{Key: kafkax.HeaderEventID, Value: []byte(raw.EventID)},
			{Key: kafkax.HeaderSource, Value: []byte(envelope.SourceReplay)},
			{Key: kafkax.HeaderAccepted, Value: []byte(accepted)},
			{Key: kafkax.HeaderReplayOf, Value: []byte(orig)},
		},
	}
	return out, raw, ""
}

// Log is reviews.raw.v1 as replay reads it (kafkalog.Client).
type Log interface {
	Scan(ctx context.Context, ss kafkalog.Spans, fn func(*kafka.Message) error) error
}

// Writer writes copies to reviews.raw.v1 (a kafka.Writer of
// kafkax.NewWriter); its Topic names it in errors.
type Writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Replayer re-publishes windows of the raw log. Log and Providers are
// required; Writer nil only counts (a dry run).
type Replayer struct {
	Log       Log
	Writer    Writer
	Topic     string
	Providers *provider.Registry
	Progress  progress.Func
	Now       func() time.Time
}

// batch is how many copies of one partition are written at once.
const batch = 500

// Run re-publishes the raw events of ss of the given providers (all: none
// given), each partition in order, so a key's copies keep their order. It
// skips earlier copies, records that are no raw envelope, and records the
// processor refuses (they would only be dead-lettered again: `dlq redrive`
// is the way back for those). It blocks until done; the Stats count what
// was published before an error too.
func (r *Replayer) Run(ctx context.Context, ss kafkalog.Spans, provs []string) (Stats, error) {
	var st struct{ scanned, published, other, replays, bad, invalid atomic.Int64 }
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	prog := progress.None("replay", "records", ss.Records())
	if r.Progress != nil {
		prog = r.Progress("replay", "records", ss.Records())
	}
	defer prog.Done()
	type buf struct{ msgs []kafka.Message }
	bufs := make(map[int]*buf)
	for _, s := range ss {
		bufs[s.Partition] = &buf{}
	}
	flush := func(b *buf) error {
		if len(b.msgs) == 0 {
			return nil
		}
		if r.Writer != nil {
			if err := r.Writer.WriteMessages(ctx, b.msgs...); err != nil {
				return fmt.Errorf("write %s: %w", r.Topic, err)
			}
		}
		st.published.Add(int64(len(b.msgs)))
		b.msgs = b.msgs[:0]
		return nil
	}
	// Each partition's buffer is only touched by the goroutine reading it.
	err := r.Log.Scan(ctx, ss, func(m *kafka.Message) error {
		st.scanned.Add(1)
		prog.Add(1)
		out, raw, skip := Message(m)
		switch {
		case skip == skipUnreadable:
			st.bad.Add(1)
			return nil
		case skip == skipReplay:
			st.replays.Add(1)
			return nil
		case len(provs) > 0 && !slices.Contains(provs, raw.Provider):
			st.other.Add(1)
			return nil
		}
		if r.Providers.NormalizeRecord(m.Key, m.Value, now).Err != nil {
			st.invalid.Add(1)
			return nil
		}
		b := bufs[m.Partition]
		b.msgs = append(b.msgs, out)
		if len(b.msgs) >= batch || m.Offset == lastOffset(ss, m.Partition) {
			return flush(b)
		}
		return nil
	})
	if err == nil {
		for _, b := range bufs {
			if err = flush(b); err != nil {
				break
			}
		}
	}
	return Stats{Scanned: st.scanned.Load(), Published: st.published.Load(), OtherProv: st.other.Load(),
		Replays: st.replays.Load(), Unreadable: st.bad.Load(), Invalid: st.invalid.Load()}, err
}

func lastOffset(ss kafkalog.Spans, p int) int64 {
	for _, s := range ss {
		if s.Partition == p {
			return s.To - 1
		}
	}
	return -1
}
