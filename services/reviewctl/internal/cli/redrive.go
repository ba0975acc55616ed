package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/deadletters"
)

// dlqRedrive checks the selected dead letters again and sends the valid
// ones back to their origin topic (deadletters.Redriver).
func (c *cmd) dlqRedrive(ctx context.Context, args []string) int {
	fs := c.newFlags("dlq redrive", "dlq redrive [--reason R] [--stage S] [--provider P] [--id ID] [--since T] [--dry-run] [--rate N/s] [--json]")
	var f deadletters.Filter
	since := timeFlag{now: c.Now}
	dlqFilterFlags(fs, &f, &since)
	fs.Func("id", "only these dead letters (comma-separated list of ids)", func(s string) error {
		f.IDs = append(f.IDs, splitList(s)...)
		return nil
	})
	dryRun := fs.Bool("dry-run", false, "check and show what would be sent; send and record nothing")
	rate := rateFlag{perSecond: 50}
	fs.Var(&rate, "rate", "at most this many records sent per second (50, 50/s, 600/m)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("dlq redrive takes no arguments, got %q (select dead letters with --id)", fs.Args())
	}
	f.Since = since.ptr()
	s, db := c.connect(ctx)
	if db == nil {
		return ExitError
	}
	defer db.Close()
	w := s.writers()
	defer w.Close()
	rd := &deadletters.Redriver{Log: s.log(kafkax.TopicDLQ), Ledger: db.Ledger(), Sender: w, Providers: c.Providers(),
		Names: s.names, Progress: c.progress(), Operator: c.operator(), PerSecond: rate.perSecond}
	b, err := rd.Prepare(ctx, f, *dryRun)
	if err != nil {
		return c.errorf("%v", err)
	}
	defer b.Release()
	sendErr := rd.Send(ctx, b)
	rep := b.Report
	if *asJSON {
		if code := c.writeJSON(rep); code != ExitOK {
			return code
		}
	} else {
		printRedrive(c.Out, rep)
	}
	if sendErr != nil {
		return c.errorf("redrive stopped: %v (%d sent and recorded before that; run it again to go on)", sendErr, len(rep.Redriven))
	}
	if len(rep.Invalid) > 0 {
		return ExitDrift
	}
	return ExitOK
}

func printRedrive(w io.Writer, rep deadletters.Report) {
	verb := "redriven"
	if rep.DryRun {
		verb = "would redrive"
	}
	for _, it := range rep.Redriven {
		fmt.Fprintf(w, "%-14s %s  %s/%s -> %s (%s)\n", verb, it.ID, it.Stage, it.Reason, it.TargetTopic, plural(it.Records, "record"))
	}
	for _, it := range rep.Invalid {
		fmt.Fprintf(w, "%-14s %s  %s/%s, now: %s\n", "still invalid", it.ID, it.Stage, it.Reason, shorten(it.Error, 120))
	}
	for _, u := range rep.Unreadable {
		fmt.Fprintf(w, "%-14s dlq partition %d offset %d: %s\n", "unreadable", u.Partition, u.Offset, u.Error)
	}
	sum := fmt.Sprintf("%d dead letters selected: %d %s, %d still invalid (not sent), %d redriven before (skipped)",
		rep.Matched, len(rep.Redriven), verb, len(rep.Invalid), len(rep.AlreadyRedriven))
	if rep.DryRun {
		sum += "; dry run: nothing sent or recorded"
	}
	fmt.Fprintln(w, sum)
}
