package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/kafkalog"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/replay"
)

// replay re-publishes a window of the raw log (replay.Replayer).
func (c *cmd) replay(ctx context.Context, args []string) int {
	fs := c.newFlags("replay", "replay --from T [--to T] [--provider P] [--dry-run] [--json]")
	from, to := timeFlag{now: c.Now}, timeFlag{now: c.Now}
	fs.Var(&from, "from", "replay records written at or after this time (required): "+timeHelp)
	fs.Var(&to, "to", "and before this time (default: the end of the log when the replay starts)")
	provFlag := fs.String("provider", "", "only this provider's events (comma-separated list)")
	dryRun := fs.Bool("dry-run", false, "count what would be replayed; publish nothing")
	asJSON := fs.Bool("json", false, "machine-readable summary")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("replay takes no arguments, got %q", fs.Args())
	}
	if !from.set {
		return c.errorf("replay needs --from: the start of the window to replay (see reviewctl replay -h)")
	}
	if to.set && !to.t.After(from.t) {
		return c.errorf("--to (%s) must be after --from (%s)", to.t.Format(time.RFC3339), from.t.Format(time.RFC3339))
	}
	provs := splitList(*provFlag)
	reg, err := c.knownProviders(provs...)
	if err != nil {
		return c.errorf("%v", err)
	}
	s, err := c.settings()
	if err != nil {
		return c.errorf("%v", err)
	}
	lc := s.log(kafkax.TopicRaw)
	ss, err := lc.Snapshot(ctx, from.t, to.t)
	if err != nil {
		return c.errorf("%v", err)
	}
	rp := &replay.Replayer{Log: lc, Topic: lc.Topic(), Providers: reg, Progress: c.progress(), Now: c.Now}
	if !*dryRun {
		w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: lc.Topic()})
		defer w.Close()
		rp.Writer = w
	}
	st, err := rp.Run(ctx, ss, provs)
	if err != nil {
		return c.errorf("replay stopped after publishing %d events: %v (replaying the window again is safe: copies get the same ids and downstream drops duplicates)", st.Published, err)
	}
	if *asJSON {
		return c.writeJSON(struct {
			DryRun bool            `json:"dry_run"`
			Topic  string          `json:"topic"`
			From   time.Time       `json:"from"`
			To     time.Time       `json:"to,omitzero"`
			Spans  []kafkalog.Span `json:"offsets"`
			replay.Stats
		}{*dryRun, lc.Topic(), from.t, to.t, ss, st})
	}
	win := fmt.Sprintf("from %s", from.t.Format(time.RFC3339))
	if to.set {
		win += " to " + to.t.Format(time.RFC3339)
	} else {
		win += " to the end of the log at start"
	}
	verb := "replayed"
	if *dryRun {
		verb = "would replay"
	}
	fmt.Fprintf(c.Out, "%s %d events %s (%d records scanned); skipped: %d of other providers, %d earlier replays, %d unreadable, %d the processor refuses\n",
		verb, st.Published, win, st.Scanned, st.OtherProv, st.Replays, st.Unreadable, st.Invalid)
	return ExitOK
}
