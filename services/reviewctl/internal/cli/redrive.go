package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/review"
)

// redriveLock is the advisory lock that keeps two redrives from sending the
// same dead letters at once ("reviewctl-redrive").
const redriveLock int64 = 0x7265766965770030

// redrivePlan is what redriving one dead letter sends, or why it cannot.
type redrivePlan struct {
	dl       envelope.DeadLetter
	target   kafkax.Topic
	msgs     []kafka.Message
	eventIDs []string
	// invalid is set when the record is still invalid: nothing is sent.
	invalid       error
	invalidReason string
}

// origin decides where a dead letter's record came from: the topic it was
// read from when it came from Kafka, else by stage (the receiver and the
// poller dead-letter provider bodies, the processor raw envelopes, the sink
// normalized events).
func origin(dl envelope.DeadLetter) kafkax.Topic {
	switch {
	case strings.HasSuffix(dl.Topic, string(kafkax.TopicRaw)):
		return kafkax.TopicRaw
	case strings.HasSuffix(dl.Topic, string(kafkax.TopicNormalized)):
		return kafkax.TopicNormalized
	}
	switch dl.Stage {
	case envelope.StageProcessor:
		return kafkax.TopicRaw
	case envelope.StageSink:
		return kafkax.TopicNormalized
	case envelope.StagePoller:
		if _, err := envelope.ParseRaw(dl.RecordBytes()); err == nil {
			return kafkax.TopicRaw
		}
	}
	return "" // a provider body, to be split into raw events
}

// planRedrive checks a dead letter's record again with today's code (the
// provider adapters, the canonical model's rules) and builds the records
// that redriving it sends:
//
//   - a raw envelope (processor stage) goes back to reviews.raw.v1 untouched,
//     with its original key and headers;
//   - a normalized event (sink stage) goes back to reviews.normalized.v1
//     untouched, keyed by its review id;
//   - a provider body (receiver or poller stage) is split by the provider's
//     adapter into raw envelopes, as the receiver would have written them had
//     the body been valid: source webhook (receiver) or poll (poller), the
//     event ids the receiver derives from the webhook-id, received_at and
//     accepted-at the time the body was first refused. It is not `replay`:
//     these changes never reached the raw log before.
//
// Every record carries the header redrive-of: <dead letter id>.
func planRedrive(dl envelope.DeadLetter, reg *provider.Registry) redrivePlan {
	p := redrivePlan{dl: dl, target: origin(dl)}
	fail := func(reason string, err error) redrivePlan {
		if r := provider.ReasonOf(err); r != "" {
			reason = string(r)
		}
		p.invalid, p.invalidReason, p.msgs = err, reason, nil
		return p
	}
	body := dl.RecordBytes()
	redriveHdr := kafka.Header{Key: kafkax.HeaderRedriveOf, Value: []byte(dl.ID)}
	switch p.target {
	case kafkax.TopicRaw:
		key := dl.Key
		if key == "" {
			// Unkeyed (a poller's event the adapter refused): the key
			// the review names, checked below like any other.
			if raw, err := envelope.ParseRaw(body); err == nil {
				if ad, ok := reg.Get(raw.Provider); ok {
					if ev, err := ad.Normalize(raw.Payload, raw.ReceivedAt); err == nil {
						key = ev.Review.ID
					}
				}
			}
		}
		// The processor's own rule, so redrive sends only what it takes.
		n := reg.NormalizeRecord([]byte(key), body, dl.FailedAt)
		if n.Err != nil {
			return fail(string(n.Reason), n.Err)
		}
		raw := n.Raw
		hdrs := headersOf(dl.Headers)
		setDefaultHeader(&hdrs, kafkax.HeaderEventID, raw.EventID)
		setDefaultHeader(&hdrs, kafkax.HeaderSource, string(raw.Source))
		setDefaultHeader(&hdrs, kafkax.HeaderAccepted, raw.ReceivedAt.UTC().Format(time.RFC3339Nano))
		p.msgs = []kafka.Message{{Key: []byte(key), Value: body, Headers: append(hdrs, redriveHdr)}}
		p.eventIDs = []string{envelope.Header(p.msgs[0], kafkax.HeaderEventID)}
	case kafkax.TopicNormalized:
		var ev review.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return fail(string(provider.ReasonNotJSON), fmt.Errorf("not a normalized event: %v", err))
		}
		if err := validateEvent(ev, reg); err != nil {
			return fail(string(provider.ReasonInvalidField), err)
		}
		key := dl.Key
		if key == "" {
			key = ev.Review.ID
		}
		if key != ev.Review.ID {
			return fail("key_mismatch", fmt.Errorf("record key %q is not the review id %q", key, ev.Review.ID))
		}
		p.msgs = []kafka.Message{{Key: []byte(key), Value: body, Headers: append(headersOf(dl.Headers), redriveHdr)}}
		p.eventIDs = []string{envelope.Header(p.msgs[0], kafkax.HeaderEventID)}
	default:
		p.target = kafkax.TopicRaw
		name := dl.Provider
		if name == "" {
			name, _, _ = strings.Cut(dl.Key, ":")
		}
		delivery := dl.Headers["webhook-id"]
		if delivery == "" {
			delivery = dl.ID
		}
		src := envelope.SourceWebhook
		if dl.Stage == envelope.StagePoller {
			src = envelope.SourcePoll
		}
		d, err := reg.SplitDelivery(name, delivery, src, body, dl.FailedAt)
		if err != nil {
			return fail(string(provider.ReasonUnknownShape), err)
		}
		for i := range d.Messages {
			d.Messages[i].Headers = append(d.Messages[i].Headers, redriveHdr)
		}
		p.msgs, p.eventIDs = d.Messages, d.EventIDs
	}
	return p
}

// validateEvent checks a normalized event with the model's one check
// (review.Validate, as the sink does), and that its provider is known.
func validateEvent(ev review.Event, reg *provider.Registry) error {
	if err := review.Validate(ev); err != nil {
		return err
	}
	if _, ok := reg.Get(ev.Review.Provider); !ok {
		return fmt.Errorf("provider %q has no adapter", ev.Review.Provider)
	}
	return nil
}

func headersOf(m map[string]string) []kafka.Header {
	out := make([]kafka.Header, 0, len(m)+2)
	for _, k := range []string{kafkax.HeaderEventID, kafkax.HeaderSource, kafkax.HeaderAccepted, kafkax.HeaderRepair} {
		if v, ok := m[k]; ok {
			out = append(out, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	return out
}

func setDefaultHeader(hs *[]kafka.Header, key, value string) {
	for _, h := range *hs {
		if h.Key == key {
			return
		}
	}
	*hs = append(*hs, kafka.Header{Key: key, Value: []byte(value)})
}

// redriveReport is the outcome of a redrive, as --json prints it.
type redriveReport struct {
	DryRun          bool            `json:"dry_run"`
	Matched         int             `json:"matched"`
	Redriven        []redriveItem   `json:"redriven"`
	Invalid         []redriveItem   `json:"invalid"`
	AlreadyRedriven []redriveItem   `json:"already_redriven"`
	Unreadable      []unreadableDLQ `json:"unreadable,omitempty"`
}

type redriveItem struct {
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

type unreadableDLQ struct {
	Partition int    `json:"dlq_partition"`
	Offset    int64  `json:"dlq_offset"`
	Error     string `json:"error"`
}

func runDLQRedrive(ctx context.Context, args []string, o IO) int {
	fs := newFlags("dlq redrive", "dlq redrive [--reason R] [--stage S] [--provider P] [--id ID] [--since T] [--dry-run] [--rate N/s] [--json]", o)
	var f dlqFilter
	dlqFilterFlags(fs, &f)
	fs.Func("id", "only these dead letters (comma-separated list of ids)", func(s string) error {
		f.ids = append(f.ids, splitList(s)...)
		return nil
	})
	dryRun := fs.Bool("dry-run", false, "check and show what would be sent; send and record nothing")
	rate := rateFlag{perSecond: 50}
	fs.Var(&rate, "rate", "at most this many records sent per second (50, 50/s, 600/m)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("dlq redrive takes no arguments, got %q (select dead letters with --id)", fs.Args())
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	db, err := s.openDB(ctx)
	if err != nil {
		return o.Errorf("%v", err)
	}
	defer db.Close()
	if !*dryRun {
		unlock, err := tryLock(ctx, db, redriveLock)
		if err != nil {
			return o.Errorf("%v", err)
		}
		if unlock == nil {
			return o.Errorf("another `reviewctl dlq redrive` is running against this database; try again when it is done")
		}
		defer unlock()
	}
	all, err := readDeadLetters(ctx, s, o)
	if err != nil {
		return o.Errorf("read %s: %v", s.topic(kafkax.TopicDLQ), err)
	}
	rep := redriveReport{DryRun: *dryRun, Redriven: []redriveItem{}, Invalid: []redriveItem{}, AlreadyRedriven: []redriveItem{}}
	var sel []envelope.DeadLetter
	seen := map[string]bool{}
	for _, d := range all {
		if !f.match(d) {
			continue
		}
		if d.Bad != nil {
			rep.Unreadable = append(rep.Unreadable, unreadableDLQ{d.Partition, d.Offset, d.Bad.Error()})
			continue
		}
		if seen[d.ID] {
			continue // the same record failed the same way again
		}
		seen[d.ID] = true
		sel = append(sel, d.DeadLetter)
	}
	rep.Matched = len(sel)
	ids := make([]string, len(sel))
	for i, d := range sel {
		ids[i] = d.ID
	}
	led, err := loadRedrives(ctx, db, ids)
	if err != nil {
		return o.Errorf("%v", err)
	}
	reg := adapters()
	var plans []redrivePlan
	for _, d := range sel {
		if r, ok := led[d.ID]; ok {
			at := r.At
			rep.AlreadyRedriven = append(rep.AlreadyRedriven, redriveItem{ID: d.ID, Stage: string(d.Stage), Reason: d.Reason,
				Key: d.Key, TargetTopic: r.Topic, Records: r.Records, RedrivenAt: &at})
			continue
		}
		p := planRedrive(d, reg)
		if p.invalid != nil {
			rep.Invalid = append(rep.Invalid, redriveItem{ID: d.ID, Stage: string(d.Stage), Reason: d.Reason, Key: d.Key,
				Error: p.invalid.Error(), StillReason: p.invalidReason})
			continue
		}
		plans = append(plans, p)
	}
	var sendErr error
	if *dryRun {
		for _, p := range plans {
			rep.Redriven = append(rep.Redriven, itemOf(p, s))
		}
	} else if len(plans) > 0 {
		sendErr = sendRedrives(ctx, s, db, plans, rate.perSecond, operator(o), o, func(p redrivePlan) {
			rep.Redriven = append(rep.Redriven, itemOf(p, s))
		})
	}
	if *asJSON {
		if code := writeJSON(o, rep); code != ExitOK {
			return code
		}
	} else {
		printRedrive(o, rep)
	}
	if sendErr != nil {
		return o.Errorf("redrive stopped: %v (%d sent and recorded before that; run it again to go on)", sendErr, len(rep.Redriven))
	}
	if len(rep.Invalid) > 0 {
		return ExitDrift
	}
	return ExitOK
}

func itemOf(p redrivePlan, s settings) redriveItem {
	return redriveItem{ID: p.dl.ID, Stage: string(p.dl.Stage), Reason: p.dl.Reason, Key: p.dl.Key,
		TargetTopic: s.topic(p.target), Records: len(p.msgs), EventIDs: p.eventIDs}
}

func printRedrive(o IO, rep redriveReport) {
	verb := "redriven"
	if rep.DryRun {
		verb = "would redrive"
	}
	for _, it := range rep.Redriven {
		fmt.Fprintf(o.Out, "%-14s %s  %s/%s -> %s (%s)\n", verb, it.ID, it.Stage, it.Reason, it.TargetTopic, plural(it.Records, "record"))
	}
	for _, it := range rep.Invalid {
		fmt.Fprintf(o.Out, "%-14s %s  %s/%s, now: %s\n", "still invalid", it.ID, it.Stage, it.Reason, shorten(it.Error, 120))
	}
	for _, u := range rep.Unreadable {
		fmt.Fprintf(o.Out, "%-14s dlq partition %d offset %d: %s\n", "unreadable", u.Partition, u.Offset, u.Error)
	}
	sum := fmt.Sprintf("%d dead letters selected: %d %s, %d still invalid (not sent), %d redriven before (skipped)",
		rep.Matched, len(rep.Redriven), verb, len(rep.Invalid), len(rep.AlreadyRedriven))
	if rep.DryRun {
		sum += "; dry run: nothing sent or recorded"
	}
	fmt.Fprintln(o.Out, sum)
}

// sendRedrives writes each plan's records to its topic at the given rate and
// records it in dlq_redrives once Kafka acknowledged them. A crash between
// the two re-sends that dead letter on the next run; the processor's and the
// sink's idempotence absorb the repeat.
func sendRedrives(ctx context.Context, s settings, db *pgxpool.Pool, plans []redrivePlan, perSecond float64,
	by string, o IO, done func(redrivePlan)) error {
	writers := map[kafkax.Topic]*kafka.Writer{}
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	total := 0
	for _, p := range plans {
		total += len(p.msgs)
	}
	prog := startProgress(o.Err, "redrive", "records", int64(total))
	defer prog.Done()
	pace := newPacer(perSecond)
	for _, p := range plans {
		w := writers[p.target]
		if w == nil {
			w = kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: s.topic(p.target)})
			writers[p.target] = w
		}
		for _, m := range p.msgs {
			if err := pace.wait(ctx); err != nil {
				return err
			}
			if err := w.WriteMessages(ctx, m); err != nil {
				return fmt.Errorf("write %s to %s: %w", p.dl.ID, s.topic(p.target), err)
			}
			prog.Add(1)
		}
		_, err := db.Exec(ctx, `INSERT INTO dlq_redrives
			(dlq_id, stage, reason, dlq_key, provider, target_topic, records, event_ids, redriven_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (dlq_id) DO NOTHING`,
			p.dl.ID, string(p.dl.Stage), p.dl.Reason, p.dl.Key, p.dl.Provider, s.topic(p.target), len(p.msgs), p.eventIDs, by)
		if err != nil {
			return fmt.Errorf("record the redrive of %s (its records were sent): %w", p.dl.ID, err)
		}
		done(p)
	}
	return nil
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

// tryLock takes a session-level advisory lock on a connection of its own.
// It returns nil, nil when another session holds the lock; else a function
// that releases the lock and the connection.
func tryLock(ctx context.Context, db *pgxpool.Pool, key int64) (func(), error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("PostgreSQL advisory lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, nil
	}
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Exec(c, `SELECT pg_advisory_unlock($1)`, key)
		conn.Release()
	}, nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
