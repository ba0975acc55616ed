package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
)

func init() {
	register("backfill", "queue a historical pull of a provider (--provider P --since T); backfill status", runBackfill)
}

const backfillUsage = `usage: reviewctl backfill --provider P --since T [--dry-run] [--json]
       reviewctl backfill status [--provider P] [--limit N] [--json]

backfill queues a backfill request on reviews.sync-requests.v1 (key: the provider) and prints
its request id; the poller pulls the provider's history since T with the rate budget that live
sync and refresh requests leave. Queuing is the command's whole effect, so it needs no --apply;
--dry-run prints the request without sending it.

backfill status lists the backfill jobs the poller recorded (table backfill_jobs), newest first.
`

func runBackfill(ctx context.Context, args []string, o IO) int {
	if len(args) > 0 && args[0] == "status" {
		return runBackfillStatus(ctx, args[1:], o)
	}
	fs := newFlags("backfill", "backfill --provider P --since T [--dry-run] [--json]", o)
	fs.Usage = func() {
		io.WriteString(o.Err, backfillUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	prov := fs.String("provider", "", "the provider to pull history from (required)")
	var since timeFlag
	fs.Var(&since, "since", "pull changes since this time (required): "+timeHelp)
	dryRun := fs.Bool("dry-run", false, "print the request; send nothing")
	asJSON := fs.Bool("json", false, "print the request as JSON")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("backfill takes no arguments, got %q (did you mean `backfill status`?)", fs.Args())
	}
	if *prov == "" || !since.set {
		return o.Errorf("backfill needs --provider and --since (see reviewctl backfill -h)")
	}
	reg := adapters()
	if _, ok := reg.Get(*prov); !ok {
		return o.Errorf("unknown provider %q (known: %s)", *prov, strings.Join(reg.Names(), ", "))
	}
	now := time.Now().UTC()
	if since.t.After(now) {
		return o.Errorf("--since %s is in the future", since.t.Format(time.RFC3339))
	}
	s, err := loadSettings(o)
	if err != nil {
		return o.Errorf("%v", err)
	}
	req := envelope.SyncRequest{
		RequestID:   newRequestID("bf"),
		Kind:        envelope.SyncBackfill,
		Provider:    *prov,
		Since:       since.t,
		RequestedAt: now,
		RequestedBy: operator(o),
	}
	val, err := json.Marshal(req)
	if err != nil {
		return o.Errorf("encode sync request: %v", err)
	}
	topic := s.topic(kafkax.TopicSyncRequests)
	if !*dryRun {
		w := kafkax.NewWriter(kafkax.WriterConfig{Brokers: s.Brokers, Topic: topic})
		defer w.Close()
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte(req.Provider), Value: val, Headers: []kafka.Header{
			{Key: kafkax.HeaderEventID, Value: []byte(req.RequestID)},
		}})
		if err != nil {
			return o.Errorf("queue the backfill request on %s: %v", topic, err)
		}
	}
	if *asJSON {
		return writeJSON(o, struct {
			envelope.SyncRequest
			Topic  string `json:"topic"`
			DryRun bool   `json:"dry_run"`
		}{req, topic, *dryRun})
	}
	if *dryRun {
		fmt.Fprintf(o.Err, "dry run: would queue on %s: %s\n", topic, val)
	} else {
		fmt.Fprintf(o.Err, "backfill of %s since %s queued on %s; follow it with `reviewctl backfill status`\n",
			req.Provider, req.Since.Format(time.RFC3339), topic)
	}
	fmt.Fprintln(o.Out, req.RequestID)
	return ExitOK
}

// newRequestID returns prefix_ and 20 random hex characters.
func newRequestID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// backfillJob is a row of the poller's backfill_jobs.
type backfillJob struct {
	RequestID   string     `json:"request_id"`
	Provider    string     `json:"provider"`
	Since       *time.Time `json:"since"`
	Status      string     `json:"status"`
	Pages       int64      `json:"pages"`
	Events      int64      `json:"events"`
	Cursor      string     `json:"cursor"`
	Error       string     `json:"error"`
	RequestedBy string     `json:"requested_by"`
	RequestedAt *time.Time `json:"requested_at"`
	StartedAt   *time.Time `json:"started_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
	FinishedAt  *time.Time `json:"finished_at"`
}

func runBackfillStatus(ctx context.Context, args []string, o IO) int {
	fs := newFlags("backfill status", "backfill status [--provider P] [--limit N] [--json]", o)
	prov := fs.String("provider", "", "only this provider's jobs")
	limit := fs.Int("limit", 20, "at most this many jobs, newest first (0: all)")
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code := parseArgs(fs, args, o); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return o.Errorf("backfill status takes no arguments, got %q", fs.Args())
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
	q := `SELECT request_id::text, provider::text, since::timestamptz, status::text,
			coalesce(pages, 0)::bigint, coalesce(events, 0)::bigint, coalesce(cursor::text, ''), coalesce(error::text, ''),
			coalesce(to_jsonb(b)->>'requested_by', ''),
			requested_at::timestamptz, started_at::timestamptz, updated_at::timestamptz, finished_at::timestamptz
		FROM backfill_jobs b WHERE ($1 = '' OR provider = $1)
		ORDER BY requested_at DESC NULLS LAST, request_id`
	qargs := []any{*prov}
	if *limit > 0 {
		q += ` LIMIT $2`
		qargs = append(qargs, *limit)
	}
	jobs := []backfillJob{}
	rows, err := db.Query(ctx, q, qargs...)
	if err == nil {
		for rows.Next() {
			var j backfillJob
			if err = rows.Scan(&j.RequestID, &j.Provider, &j.Since, &j.Status, &j.Pages, &j.Events, &j.Cursor, &j.Error,
				&j.RequestedBy, &j.RequestedAt, &j.StartedAt, &j.UpdatedAt, &j.FinishedAt); err != nil {
				break
			}
			jobs = append(jobs, j)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if isUndefinedTable(err) {
		// The poller creates the table (migration 0020); until a build with
		// it has run `reviewctl setup`, there are no jobs to show.
		const note = "no backfill jobs: table backfill_jobs does not exist yet (the poller's migration 0020 has not been applied; run `reviewctl setup` with a build that has it)"
		if *asJSON {
			return writeJSON(o, map[string]any{"jobs": jobs, "table_missing": true, "note": note})
		}
		fmt.Fprintln(o.Out, note)
		return ExitOK
	}
	if err != nil {
		return o.Errorf("read backfill_jobs: %v", err)
	}
	if *asJSON {
		return writeJSON(o, map[string]any{"jobs": jobs})
	}
	if len(jobs) == 0 {
		fmt.Fprintln(o.Out, "no backfill jobs yet (a queued request shows up once the poller takes it)")
		return ExitOK
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
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

func ts(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
