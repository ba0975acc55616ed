package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

func init() {
	register("replay", "re-drive raw events of a time window through processing (--from T [--to T] [--provider P])", runReplay)
}

// replayEventID derives a replayed copy's event id from the original's, so
// replaying a window twice yields the same ids.
func replayEventID(original string) string {
	h := sha256.Sum256([]byte("replay\x00" + original))
	return "evt_" + hex.EncodeToString(h[:12])
}

// replayStats counts what a replay did.
type replayStats struct {
	Scanned    int64 `json:"scanned"`
	Published  int64 `json:"published"`
	OtherProv  int64 `json:"skipped_other_provider"`
	Replays    int64 `json:"skipped_earlier_replays"`
	Unreadable int64 `json:"skipped_unreadable"`
	Invalid    int64 `json:"skipped_invalid"`
}

// replayMessage builds the copy of a raw record that replay publishes: the
// same key and payload, source replay, a derived event id, the original's
// received_at and accepted-at (so freshness still counts from the first
// acceptance), and replay-of naming the original event. ok is false for a
// record that replay skips: not a raw envelope, or itself a replay (a copy
// of an event already in the log: replaying it again would only multiply
// copies).
func replayMessage(m *kafka.Message) (out kafka.Message, raw envelope.Raw, skip string) {
	raw, err := envelope.ParseRaw(m.Value)
	if err != nil {
		return out, raw, "unreadable"
	}
	if raw.Source == envelope.SourceReplay {
		return out, raw, "replay"
	}
	orig := raw.EventID
	raw.EventID = replayEventID(orig)
	raw.Source = envelope.SourceReplay
	val, err := json.Marshal(raw)
	if err != nil {
		return out, raw, "unreadable"
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

func runReplay(ctx context.Context, args []string, o IO) int {
	fs := newFlags("replay", "replay --from T [--to T] [--provider P] [--dry-run] [--json]", o)
	var from, to timeFlag
	fs.Var(&from, "from", "replay records written at or after this time (required): "+timeHelp)
	fs.Var(&to, "to", "and before this time (default: the end of the log when the replay starts)")
	provFlag := fs.String("provider", "", "only this provider's events (comma-separated list)")
	dryRun := fs.Bool("dry-run", false, "count what would be replayed; publish nothing")
	asJSON := fs.Bool("json", false, "machine-readable summary")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("replay takes no arguments, got %q", fs.Args())
	}
	if !from.set {
		return o.Errorf("replay needs --from: the start of the window to replay (see reviewctl replay -h)")
	}
	if to.set && !to.t.After(from.t) {
		return o.Errorf("--to (%s) must be after --from (%s)", to.t.Format(time.RFC3339), from.t.Format(time.RFC3339))
	}
	provs := splitList(*provFlag)
	reg := adapters()
	for _, p := range provs {
		if _, ok := reg.Get(p); !ok {
			return o.Errorf("unknown provider %q (known: %s)", p, strings.Join(reg.Names(), ", "))
		}
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	topic := s.topic(kafkax.TopicRaw)
	lc := newLogClient(s.Brokers, topic)
	ss, err := lc.snapshot(ctx, from.t, to.t)
	if err != nil {
		return o.Errorf("%v", err)
	}
	var w *kafka.Writer
	if !*dryRun {
		w = kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: topic})
		defer w.Close()
	}
	st, err := replay(ctx, lc, ss, w, provs, o)
	if err != nil {
		return o.Errorf("replay stopped after publishing %d events: %v (replaying the window again is safe: copies get the same ids and downstream drops duplicates)", st.Published, err)
	}
	win := fmt.Sprintf("from %s", from.t.Format(time.RFC3339))
	if to.set {
		win += " to " + to.t.Format(time.RFC3339)
	} else {
		win += " to the end of the log at start"
	}
	if *asJSON {
		return writeJSON(o, struct {
			DryRun bool      `json:"dry_run"`
			Topic  string    `json:"topic"`
			From   time.Time `json:"from"`
			To     time.Time `json:"to,omitzero"`
			Spans  []span    `json:"offsets"`
			replayStats
		}{*dryRun, topic, from.t, to.t, ss, st})
	}
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(o.Out, "%s %d events %s (%d records scanned); skipped: %d of other providers, %d earlier replays, %d unreadable, %d the processor refuses\n",
		verb, st.Published, win, st.Scanned, st.OtherProv, st.Replays, st.Unreadable, st.Invalid)
	return ExitOK
}

// replay re-publishes the raw events of ss through w (nil: count only),
// each partition in order, so a key's copies keep their order.
func replay(ctx context.Context, lc *logClient, ss spans, w *kafka.Writer, provs []string, o IO) (replayStats, error) {
	var st struct{ scanned, published, other, replays, bad, invalid atomic.Int64 }
	reg, now := adapters(), time.Now()
	prog := startProgress(o.Err, "replay", "records", ss.Records())
	defer prog.Done()
	type buf struct{ msgs []kafka.Message }
	const batch = 500
	bufs := make(map[int]*buf)
	for _, s := range ss {
		bufs[s.Partition] = &buf{}
	}
	flush := func(b *buf) error {
		if len(b.msgs) == 0 {
			return nil
		}
		if w != nil {
			if err := w.WriteMessages(ctx, b.msgs...); err != nil {
				return fmt.Errorf("write %s: %w", w.Topic, err)
			}
		}
		st.published.Add(int64(len(b.msgs)))
		b.msgs = b.msgs[:0]
		return nil
	}
	// Each partition's buffer is only touched by the goroutine reading it.
	err := lc.scan(ctx, ss, scanConfig{}, func(m *kafka.Message) error {
		st.scanned.Add(1)
		prog.Add(1)
		out, raw, skip := replayMessage(m)
		switch {
		case skip == "unreadable":
			st.bad.Add(1)
			return nil
		case skip == "replay":
			st.replays.Add(1)
			return nil
		case len(provs) > 0 && !contains(provs, raw.Provider):
			st.other.Add(1)
			return nil
		}
		// A record the processor refuses would only be dead-lettered
		// again; `dlq redrive` is the way back for those.
		if _, _, err := normalizeRecord(reg, m, now); err != nil {
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
	return replayStats{Scanned: st.scanned.Load(), Published: st.published.Load(), OtherProv: st.other.Load(),
		Replays: st.replays.Load(), Unreadable: st.bad.Load(), Invalid: st.invalid.Load()}, err
}

func lastOffset(ss spans, p int) int64 {
	for _, s := range ss {
		if s.Partition == p {
			return s.To - 1
		}
	}
	return -1
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
