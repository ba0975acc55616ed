package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

func init() {
	register("dlq", "dead letters: list, show ID, redrive [--dry-run] (reviews.dlq.v1)", runDLQ)
}

const dlqUsage = `usage: reviewctl dlq <list|show|redrive> [flags]

  list [--reason R] [--stage S] [--provider P] [--since T] [--json]
        the dead letters on reviews.dlq.v1, oldest first, with whether each was redriven
  show ID [--json | --raw]
        one dead letter with its record
  redrive [--reason R] [--stage S] [--id ID] [--since T] [--dry-run] [--rate N/s] [--json]
        check each dead letter again and send the ones that are now valid back to their origin
        topic; records still invalid are reported, not sent. Exit 0 when every selected dead letter
        was sent (or nothing was left to send), 1 when some are still invalid, 2 on an error.

Run reviewctl dlq <command> -h for a command's flags.
`

func runDLQ(ctx context.Context, args []string, o IO) int {
	if len(args) == 0 {
		io.WriteString(o.Err, dlqUsage)
		return ExitError
	}
	switch args[0] {
	case "-h", "--help", "help":
		io.WriteString(o.Err, dlqUsage)
		return ExitOK
	case "list":
		return runDLQList(ctx, args[1:], o)
	case "show":
		return runDLQShow(ctx, args[1:], o)
	case "redrive":
		return runDLQRedrive(ctx, args[1:], o)
	}
	io.WriteString(o.Err, dlqUsage)
	return o.Errorf("unknown dlq command %q", args[0])
}

// deadLetter is one record of reviews.dlq.v1 with where it sits. Bad is set
// when the value is not a dead letter at all.
type deadLetter struct {
	envelope.DeadLetter
	Partition int
	Offset    int64
	Bad       error
}

// readDeadLetters reads reviews.dlq.v1 from its first offsets up to the end
// offsets of the moment of the call, sorted by failure time.
func readDeadLetters(ctx context.Context, s settings, o IO) ([]deadLetter, error) {
	lc := newLogClient(s.Brokers, s.topic(kafkax.TopicDLQ))
	ss, err := lc.snapshot(ctx, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	prog := startProgress(o.Err, "reading dead letters", "records", ss.Records())
	var (
		mu  sync.Mutex
		out []deadLetter
	)
	err = lc.scan(ctx, ss, scanConfig{}, func(m *kafka.Message) error {
		d := deadLetter{Partition: m.Partition, Offset: m.Offset}
		if err := json.Unmarshal(m.Value, &d.DeadLetter); err != nil {
			d.Bad = fmt.Errorf("not a dead letter: %v", err)
		} else if d.ID == "" || d.Stage == "" {
			d.Bad = errors.New("not a dead letter: no id or stage")
		}
		if d.Key == "" {
			d.Key = string(m.Key)
		}
		mu.Lock()
		out = append(out, d)
		mu.Unlock()
		prog.Add(1)
		return nil
	})
	prog.Done()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].FailedAt.Equal(out[j].FailedAt) {
			return out[i].FailedAt.Before(out[j].FailedAt)
		}
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// dlqFilter selects dead letters by the list and redrive flags.
type dlqFilter struct {
	reasons, stages, providers, ids []string
	since                           timeFlag
}

func (f *dlqFilter) match(d deadLetter) bool {
	if d.Bad != nil {
		return len(f.reasons) == 0 && len(f.stages) == 0 && len(f.providers) == 0 && len(f.ids) == 0 && !f.since.set
	}
	return (len(f.reasons) == 0 || slices.Contains(f.reasons, d.Reason)) &&
		(len(f.stages) == 0 || slices.Contains(f.stages, string(d.Stage))) &&
		(len(f.providers) == 0 || slices.Contains(f.providers, d.Provider)) &&
		(len(f.ids) == 0 || slices.Contains(f.ids, d.ID)) &&
		(!f.since.set || !d.FailedAt.Before(f.since.t))
}

// redriveInfo is a row of dlq_redrives.
type redriveInfo struct {
	At      time.Time `json:"redriven_at"`
	Topic   string    `json:"target_topic"`
	Records int       `json:"records"`
	By      string    `json:"redriven_by"`
}

// loadRedrives returns the ledger rows of the given dead-letter ids.
func loadRedrives(ctx context.Context, db *pgxpool.Pool, ids []string) (map[string]redriveInfo, error) {
	rows, err := db.Query(ctx, `SELECT dlq_id, redriven_at, target_topic, records, redriven_by
		FROM dlq_redrives WHERE dlq_id = ANY($1)`, ids)
	if err != nil {
		if isUndefinedTable(err) {
			return nil, missingTableErr("dlq_redrives", "0030_dlq_redrives.sql")
		}
		return nil, fmt.Errorf("read dlq_redrives: %w", err)
	}
	defer rows.Close()
	out := make(map[string]redriveInfo)
	for rows.Next() {
		var id string
		var r redriveInfo
		if err := rows.Scan(&id, &r.At, &r.Topic, &r.Records, &r.By); err != nil {
			return nil, fmt.Errorf("read dlq_redrives: %w", err)
		}
		out[id] = r
	}
	return out, rows.Err()
}

// dlqListItem is one dead letter in `dlq list --json`: the dead letter
// without its record (see `dlq show`), where it sits, and its redrive.
type dlqListItem struct {
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
	Redriven       *redriveInfo      `json:"redriven,omitempty"`
	// FailedAgain is set when this record failed after its redrive.
	FailedAgain bool   `json:"failed_again,omitempty"`
	Unreadable  string `json:"unreadable,omitempty"`
}

func listItem(d deadLetter, led map[string]redriveInfo) dlqListItem {
	it := dlqListItem{
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

func dlqFilterFlags(fs *flag.FlagSet, f *dlqFilter) {
	fs.Func("reason", "only dead letters with this reason (comma-separated list)", func(s string) error {
		f.reasons = append(f.reasons, splitList(s)...)
		return nil
	})
	fs.Func("stage", "only dead letters of this stage: receiver, poller, processor, sink (comma-separated list)", func(s string) error {
		for _, st := range splitList(s) {
			switch envelope.Stage(st) {
			case envelope.StageReceiver, envelope.StagePoller, envelope.StageProcessor, envelope.StageSink:
			default:
				return fmt.Errorf("unknown stage %q (receiver, poller, processor, sink)", st)
			}
			f.stages = append(f.stages, st)
		}
		return nil
	})
	fs.Func("provider", "only dead letters of this provider (comma-separated list)", func(s string) error {
		f.providers = append(f.providers, splitList(s)...)
		return nil
	})
	fs.Var(&f.since, "since", "only dead letters that failed at or after this time: "+timeHelp)
}

func runDLQList(ctx context.Context, args []string, o IO) int {
	fs := newFlags("dlq list", "dlq list [--reason R] [--stage S] [--provider P] [--since T] [--json]", o)
	var f dlqFilter
	dlqFilterFlags(fs, &f)
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("dlq list takes no arguments, got %q", fs.Args())
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	all, err := readDeadLetters(ctx, s, o)
	if err != nil {
		return o.Errorf("read %s: %v", s.topic(kafkax.TopicDLQ), err)
	}
	var sel []deadLetter
	ids := []string{}
	for _, d := range all {
		if f.match(d) {
			sel = append(sel, d)
			ids = append(ids, d.ID)
		}
	}
	led, ledErr := ledger(ctx, s, ids)
	if ledErr != nil {
		fmt.Fprintf(o.Err, "reviewctl: redrive status unknown: %v\n", ledErr)
	}
	items := make([]dlqListItem, len(sel))
	for i, d := range sel {
		items[i] = listItem(d, led)
	}
	if *asJSON {
		return writeJSON(o, map[string]any{"topic": s.topic(kafkax.TopicDLQ), "count": len(items), "dead_letters": items})
	}
	if len(items) == 0 {
		fmt.Fprintf(o.Out, "no dead letters match (%d on %s)\n", len(all), s.topic(kafkax.TopicDLQ))
		return ExitOK
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFAILED AT\tSTAGE\tREASON\tPROVIDER\tKEY\tREDRIVEN\tERROR")
	redriven := 0
	for _, it := range items {
		if it.Unreadable != "" {
			fmt.Fprintf(tw, "-\t-\t-\t-\t-\t%s\t-\tdlq partition %d offset %d: %s\n", it.Key, it.DLQPartition, it.DLQOffset, it.Unreadable)
			continue
		}
		st := "-"
		if it.Redriven != nil {
			redriven++
			st = it.Redriven.At.UTC().Format(time.RFC3339)
			if it.FailedAgain {
				st += " (failed again)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, it.FailedAt.UTC().Format(time.RFC3339), it.Stage, it.Reason,
			dash(it.Provider), dash(it.Key), st, shorten(it.Error, 80))
	}
	tw.Flush()
	fmt.Fprintf(o.Out, "%d dead letters shown (%d on %s), %d of them redriven\n", len(items), len(all), s.topic(kafkax.TopicDLQ), redriven)
	return ExitOK
}

// ledger reads dlq_redrives for ids; it returns an empty map when there is
// nothing to look up.
func ledger(ctx context.Context, s settings, ids []string) (map[string]redriveInfo, error) {
	if len(ids) == 0 {
		return map[string]redriveInfo{}, nil
	}
	db, err := s.openDB(ctx)
	if err != nil {
		return map[string]redriveInfo{}, err
	}
	defer db.Close()
	led, err := loadRedrives(ctx, db, ids)
	if err != nil {
		return map[string]redriveInfo{}, err
	}
	return led, nil
}

func runDLQShow(ctx context.Context, args []string, o IO) int {
	fs := newFlags("dlq show", "dlq show ID [--json | --raw]", o)
	asJSON := fs.Bool("json", false, "machine-readable output")
	raw := fs.Bool("raw", false, "write the failed record's original bytes, exactly, to stdout (nothing else)")
	// Accept the id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 || id == "" {
		return o.Errorf("dlq show takes exactly one dead-letter id (see `reviewctl dlq list`, or `reviewctl dlq show -h`)")
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	all, err := readDeadLetters(ctx, s, o)
	if err != nil {
		return o.Errorf("read %s: %v", s.topic(kafkax.TopicDLQ), err)
	}
	var found []deadLetter
	for _, d := range all {
		if d.ID == id {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return o.Errorf("no dead letter %s on %s (%d dead letters there)", id, s.topic(kafkax.TopicDLQ), len(all))
	}
	led, ledErr := ledger(ctx, s, []string{id})
	if ledErr != nil {
		fmt.Fprintf(o.Err, "reviewctl: redrive status unknown: %v\n", ledErr)
	}
	d := found[len(found)-1]
	if *raw {
		if d.RecordTruncated {
			fmt.Fprintf(o.Err, "reviewctl: dead letter %s kept only the first %d of the record's %d bytes\n",
				d.ID, len(d.RecordBytes()), d.RecordSize)
		}
		if _, err := o.Out.Write(d.RecordBytes()); err != nil {
			return o.Errorf("write the record: %v", err)
		}
		return ExitOK
	}
	it := listItem(d, led)
	if *asJSON {
		return writeJSON(o, struct {
			envelope.DeadLetter
			DLQPartition int          `json:"dlq_partition"`
			DLQOffset    int64        `json:"dlq_offset"`
			Occurrences  int          `json:"occurrences"`
			Redriven     *redriveInfo `json:"redriven,omitempty"`
			FailedAgain  bool         `json:"failed_again,omitempty"`
		}{d.DeadLetter, d.Partition, d.Offset, len(found), it.Redriven, it.FailedAgain})
	}
	w := o.Out
	fmt.Fprintf(w, "id:         %s\n", d.ID)
	fmt.Fprintf(w, "stage:      %s\n", d.Stage)
	fmt.Fprintf(w, "reason:     %s\n", d.Reason)
	fmt.Fprintf(w, "error:      %s\n", d.Error)
	fmt.Fprintf(w, "failed at:  %s\n", d.FailedAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "provider:   %s\n", dash(d.Provider))
	fmt.Fprintf(w, "key:        %s\n", dash(d.Key))
	if d.Topic != "" {
		loc := d.Topic
		if d.DeadLetter.Partition != nil && d.DeadLetter.Offset != nil {
			loc += fmt.Sprintf(" partition %d offset %d", *d.DeadLetter.Partition, *d.DeadLetter.Offset)
		}
		fmt.Fprintf(w, "from:       %s\n", loc)
	}
	fmt.Fprintf(w, "dead letter: %s partition %d offset %d", s.topic(kafkax.TopicDLQ), d.Partition, d.Offset)
	if len(found) > 1 {
		fmt.Fprintf(w, " (%d occurrences, latest shown)", len(found))
	}
	fmt.Fprintln(w)
	if it.Redriven != nil {
		fmt.Fprintf(w, "redriven:   %s to %s (%d records) by %s", it.Redriven.At.UTC().Format(time.RFC3339), it.Redriven.Topic, it.Redriven.Records, it.Redriven.By)
		if it.FailedAgain {
			fmt.Fprint(w, "; failed again since")
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "redriven:   no")
	}
	if len(d.Headers) > 0 {
		keys := make([]string, 0, len(d.Headers))
		for k := range d.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintln(w, "headers:")
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, d.Headers[k])
		}
	}
	fmt.Fprintf(w, "record (%s, %d bytes", d.RecordEncoding, len(d.RecordBytes()))
	if d.RecordTruncated {
		fmt.Fprintf(w, " of %d, cut", d.RecordSize)
	}
	fmt.Fprintln(w, "; `--raw` writes them as they were):")
	if d.RecordEncoding == envelope.RecordJSON {
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		var v any
		if json.Unmarshal(d.Record, &v) == nil && enc.Encode(v) == nil {
			io.WriteString(w, buf.String())
			return ExitOK
		}
	}
	b := d.RecordBytes()
	if d.RecordEncoding == envelope.RecordBase64 {
		// Not JSON, maybe not text: quoted, so no byte reaches the terminal as it is.
		const show = 4 << 10
		if len(b) > show {
			fmt.Fprintf(w, "%s ... (%d more bytes)\n", strconv.Quote(string(b[:show])), len(b)-show)
		} else {
			fmt.Fprintln(w, strconv.Quote(string(b)))
		}
		return ExitOK
	}
	fmt.Fprintf(w, "%s\n", b)
	return ExitOK
}

func writeJSON(o IO, v any) int {
	enc := json.NewEncoder(o.Out)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return o.Errorf("write output: %v", err)
	}
	return ExitOK
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten keeps s on one line and at most n runes.
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
