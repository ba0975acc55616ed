package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/deadletters"
)

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

// dlq dispatches `dlq list|show|redrive`.
func (c *cmd) dlq(ctx context.Context, args []string) int {
	if len(args) == 0 {
		io.WriteString(c.Err, dlqUsage)
		return ExitError
	}
	switch args[0] {
	case "-h", "--help", "help":
		io.WriteString(c.Err, dlqUsage)
		return ExitOK
	case "list":
		return c.dlqList(ctx, args[1:])
	case "show":
		return c.dlqShow(ctx, args[1:])
	case "redrive":
		return c.dlqRedrive(ctx, args[1:])
	}
	io.WriteString(c.Err, dlqUsage)
	return c.errorf("unknown dlq command %q", args[0])
}

// dlqFilterFlags defines the flags that select dead letters; since is
// copied into f.Since after parsing.
func dlqFilterFlags(fs *flag.FlagSet, f *deadletters.Filter, since *timeFlag) {
	fs.Func("reason", "only dead letters with this reason (comma-separated list)", func(s string) error {
		f.Reasons = append(f.Reasons, splitList(s)...)
		return nil
	})
	fs.Func("stage", "only dead letters of this stage: receiver, poller, processor, sink (comma-separated list)", func(s string) error {
		for _, st := range splitList(s) {
			switch envelope.Stage(st) {
			case envelope.StageReceiver, envelope.StagePoller, envelope.StageProcessor, envelope.StageSink:
			default:
				return fmt.Errorf("unknown stage %q (receiver, poller, processor, sink)", st)
			}
			f.Stages = append(f.Stages, st)
		}
		return nil
	})
	fs.Func("provider", "only dead letters of this provider (comma-separated list)", func(s string) error {
		f.Providers = append(f.Providers, splitList(s)...)
		return nil
	})
	fs.Var(since, "since", "only dead letters that failed at or after this time: "+timeHelp)
}

// readDeadLetters reads the settings and every dead letter of
// reviews.dlq.v1, oldest first. On a failure it prints the error and
// returns false.
func (c *cmd) readDeadLetters(ctx context.Context) (settings, []deadletters.DeadLetter, bool) {
	s, err := c.settings()
	if err != nil {
		c.errorf("%v", err)
		return s, nil, false
	}
	all, err := deadletters.Read(ctx, s.log(kafkax.TopicDLQ), c.progress())
	if err != nil {
		c.errorf("read %s: %v", s.topic(kafkax.TopicDLQ), err)
		return s, nil, false
	}
	return s, all, true
}

// ledger reads dlq_redrives for ids; it returns an empty map when there is
// nothing to look up.
func ledger(ctx context.Context, s settings, ids []string) (map[string]deadletters.Redrive, error) {
	if len(ids) == 0 {
		return map[string]deadletters.Redrive{}, nil
	}
	db, err := s.openDB(ctx)
	if err != nil {
		return map[string]deadletters.Redrive{}, err
	}
	defer db.Close()
	led, err := db.Ledger().Redrives(ctx, ids)
	if err != nil {
		return map[string]deadletters.Redrive{}, err
	}
	return led, nil
}

// dlqList lists the dead letters a filter selects, with their redrives.
func (c *cmd) dlqList(ctx context.Context, args []string) int {
	fs := c.newFlags("dlq list", "dlq list [--reason R] [--stage S] [--provider P] [--since T] [--json]")
	var f deadletters.Filter
	since := timeFlag{now: c.Now}
	dlqFilterFlags(fs, &f, &since)
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("dlq list takes no arguments, got %q", fs.Args())
	}
	f.Since = since.ptr()
	s, all, ok := c.readDeadLetters(ctx)
	if !ok {
		return ExitError
	}
	var sel []deadletters.DeadLetter
	ids := []string{}
	for _, d := range all {
		if f.Match(d) {
			sel = append(sel, d)
			ids = append(ids, d.ID)
		}
	}
	led, ledErr := ledger(ctx, s, ids)
	if ledErr != nil {
		fmt.Fprintf(c.Err, "reviewctl: redrive status unknown: %v\n", ledErr)
	}
	items := make([]deadletters.ListItem, len(sel))
	for i, d := range sel {
		items[i] = deadletters.ItemOf(d, led)
	}
	if *asJSON {
		return c.writeJSON(map[string]any{"topic": s.topic(kafkax.TopicDLQ), "count": len(items), "dead_letters": items})
	}
	printDLQList(c.Out, items, len(all), s.topic(kafkax.TopicDLQ))
	return ExitOK
}

func printDLQList(w io.Writer, items []deadletters.ListItem, total int, topic string) {
	if len(items) == 0 {
		fmt.Fprintf(w, "no dead letters match (%d on %s)\n", total, topic)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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
	fmt.Fprintf(w, "%d dead letters shown (%d on %s), %d of them redriven\n", len(items), total, topic, redriven)
}

// dlqShow shows one dead letter (its latest occurrence) with its record.
func (c *cmd) dlqShow(ctx context.Context, args []string) int {
	fs := c.newFlags("dlq show", "dlq show ID [--json | --raw]")
	asJSON := fs.Bool("json", false, "machine-readable output")
	raw := fs.Bool("raw", false, "write the failed record's original bytes, exactly, to stdout (nothing else)")
	// Accept the id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if id == "" && fs.NArg() == 1 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 || id == "" {
		return c.errorf("dlq show takes exactly one dead-letter id (see `reviewctl dlq list`, or `reviewctl dlq show -h`)")
	}
	s, all, ok := c.readDeadLetters(ctx)
	if !ok {
		return ExitError
	}
	var found []deadletters.DeadLetter
	for _, d := range all {
		if d.ID == id {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		return c.errorf("no dead letter %s on %s (%d dead letters there)", id, s.topic(kafkax.TopicDLQ), len(all))
	}
	led, ledErr := ledger(ctx, s, []string{id})
	if ledErr != nil {
		fmt.Fprintf(c.Err, "reviewctl: redrive status unknown: %v\n", ledErr)
	}
	d := found[len(found)-1]
	switch {
	case *raw:
		return c.writeRecord(d)
	case *asJSON:
		it := deadletters.ItemOf(d, led)
		return c.writeJSON(struct {
			envelope.DeadLetter
			DLQPartition int                  `json:"dlq_partition"`
			DLQOffset    int64                `json:"dlq_offset"`
			Occurrences  int                  `json:"occurrences"`
			Redriven     *deadletters.Redrive `json:"redriven,omitempty"`
			FailedAgain  bool                 `json:"failed_again,omitempty"`
		}{d.DeadLetter, d.Partition, d.Offset, len(found), it.Redriven, it.FailedAgain})
	}
	printDeadLetter(c.Out, d, deadletters.ItemOf(d, led), len(found), s.topic(kafkax.TopicDLQ))
	printRecord(c.Out, d)
	return ExitOK
}

// writeRecord writes the failed record's original bytes, exactly, to
// stdout (`dlq show --raw`).
func (c *cmd) writeRecord(d deadletters.DeadLetter) int {
	if d.RecordTruncated {
		fmt.Fprintf(c.Err, "reviewctl: dead letter %s kept only the first %d of the record's %d bytes\n",
			d.ID, len(d.RecordBytes()), d.RecordSize)
	}
	if _, err := c.Out.Write(d.RecordBytes()); err != nil {
		return c.errorf("write the record: %v", err)
	}
	return ExitOK
}

// printDeadLetter prints a dead letter's fields, where it sits and its
// redrive; occurrences counts the dead letters of its id.
func printDeadLetter(w io.Writer, d deadletters.DeadLetter, it deadletters.ListItem, occurrences int, dlqTopic string) {
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
	fmt.Fprintf(w, "dead letter: %s partition %d offset %d", dlqTopic, d.Partition, d.Offset)
	if occurrences > 1 {
		fmt.Fprintf(w, " (%d occurrences, latest shown)", occurrences)
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
}

// printRecord prints the failed record: indented when it is JSON, quoted
// (and cut at 4 KiB) when it was kept as base64, else as it is.
func printRecord(w io.Writer, d deadletters.DeadLetter) {
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
			return
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
		return
	}
	fmt.Fprintf(w, "%s\n", b)
}
