package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/store"
)

const backfillUsage = `usage: reviewctl backfill --provider P --since T [--dry-run] [--json]
       reviewctl backfill status [--provider P] [--limit N] [--json]

backfill queues a backfill request on reviews.sync-requests.v1 (key: the provider) and prints
its request id; the poller pulls the provider's history since T with the rate budget that live
sync and refresh requests leave. Queuing is the command's whole effect, so it needs no --apply;
--dry-run prints the request without sending it.

backfill status lists the backfill jobs the poller recorded (table backfill_jobs), newest first.
`

// backfill queues a backfill request; `backfill status` lists the jobs.
func (c *cmd) backfill(ctx context.Context, args []string) int {
	if len(args) > 0 && args[0] == "status" {
		return c.backfillStatus(ctx, args[1:])
	}
	fs := c.newFlags("backfill", "backfill --provider P --since T [--dry-run] [--json]")
	fs.Usage = func() {
		io.WriteString(c.Err, backfillUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	prov := fs.String("provider", "", "the provider to pull history from (required)")
	since := timeFlag{now: c.Now}
	fs.Var(&since, "since", "pull changes since this time (required): "+timeHelp)
	dryRun := fs.Bool("dry-run", false, "print the request; send nothing")
	asJSON := fs.Bool("json", false, "print the request as JSON")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("backfill takes no arguments, got %q (did you mean `backfill status`?)", fs.Args())
	}
	if *prov == "" || !since.set {
		return c.errorf("backfill needs --provider and --since (see reviewctl backfill -h)")
	}
	if _, err := c.knownProviders(*prov); err != nil {
		return c.errorf("%v", err)
	}
	now := c.now().UTC()
	if since.t.After(now) {
		return c.errorf("--since %s is in the future", since.t.Format(time.RFC3339))
	}
	s, err := c.settings()
	if err != nil {
		return c.errorf("%v", err)
	}
	req := envelope.SyncRequest{
		RequestID:   newRequestID("bf"),
		Kind:        envelope.SyncBackfill,
		Provider:    *prov,
		Since:       since.t,
		RequestedAt: now,
		RequestedBy: c.operator(),
	}
	val, err := json.Marshal(req)
	if err != nil {
		return c.errorf("encode sync request: %v", err)
	}
	topic := s.topic(kafkax.TopicSyncRequests)
	if !*dryRun {
		w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: topic})
		defer w.Close()
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte(req.Provider), Value: val, Headers: []kafka.Header{
			{Key: kafkax.HeaderEventID, Value: []byte(req.RequestID)},
		}})
		if err != nil {
			return c.errorf("queue the backfill request on %s: %v", topic, err)
		}
	}
	if *asJSON {
		return c.writeJSON(struct {
			envelope.SyncRequest
			Topic  string `json:"topic"`
			DryRun bool   `json:"dry_run"`
		}{req, topic, *dryRun})
	}
	if *dryRun {
		fmt.Fprintf(c.Err, "dry run: would queue on %s: %s\n", topic, val)
	} else {
		fmt.Fprintf(c.Err, "backfill of %s since %s queued on %s; follow it with `reviewctl backfill status`\n",
			req.Provider, req.Since.Format(time.RFC3339), topic)
	}
	fmt.Fprintln(c.Out, req.RequestID)
	return ExitOK
}

// newRequestID returns prefix_ and 20 random hex characters.
func newRequestID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// backfillStatus lists the poller's backfill jobs, newest first.
func (c *cmd) backfillStatus(ctx context.Context, args []string) int {
	fs := c.newFlags("backfill status", "backfill status [--provider P] [--limit N] [--json]")
	prov := fs.String("provider", "", "only this provider's jobs")
	limit := fs.Int("limit", 20, "at most this many jobs, newest first (0: all)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := c.parseArgs(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return c.errorf("backfill status takes no arguments, got %q", fs.Args())
	}
	_, db := c.connect(ctx)
	if db == nil {
		return ExitError
	}
	defer db.Close()
	jobs, err := db.BackfillJobs(ctx, *prov, *limit)
	if mt := (*store.MissingTableError)(nil); errors.As(err, &mt) {
		// The poller creates the table (migration 0020); until a build with
		// it has run `reviewctl setup`, there are no jobs to show.
		const note = "no backfill jobs: table backfill_jobs does not exist yet (the poller's migration 0020 has not been applied; run `reviewctl setup` with a build that has it)"
		if *asJSON {
			return c.writeJSON(map[string]any{"jobs": jobs, "table_missing": true, "note": note})
		}
		fmt.Fprintln(c.Out, note)
		return ExitOK
	}
	if err != nil {
		return c.errorf("read backfill_jobs: %v", err)
	}
	if *asJSON {
		return c.writeJSON(map[string]any{"jobs": jobs})
	}
	if len(jobs) == 0 {
		fmt.Fprintln(c.Out, "no backfill jobs yet (a queued request shows up once the poller takes it)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(c.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST ID\tPROVIDER\tSINCE\tSTATUS\tPAGES\tEVENTS\tREQUESTED\tUPDATED\tFINISHED\tERROR")
	for _, j := range jobs {
		since := ts(j.Since)
		if j.Since == nil {
			since = "beginning"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", j.RequestID, j.Provider, since, j.Status, j.Pages, j.Events,
			ts(j.RequestedAt), ts(j.UpdatedAt), ts(j.FinishedAt), dash(shorten(j.Error, 60)))
	}
	tw.Flush()
	return ExitOK
}
