package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/store"
)

func TestBackfill(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()

	r := run(t, "backfill", "--provider", "generic", "--since", "7d")
	id := strings.TrimSpace(r.stdout)
	if r.code != ExitOK || !strings.HasPrefix(id, "bf_") {
		t.Fatalf("backfill: exit %d, stdout %q", r.code, r.stdout)
	}
	recs := readAll(t, st, kafkax.TopicSyncRequests)
	if len(recs) != 1 {
		t.Fatalf("%d sync requests, want 1", len(recs))
	}
	var req envelope.SyncRequest
	if err := json.Unmarshal(recs[0].Value, &req); err != nil {
		t.Fatal(err)
	}
	week := time.Now().Add(-7 * 24 * time.Hour)
	if string(recs[0].Key) != "generic" || req.RequestID != id || req.Kind != envelope.SyncBackfill || req.Provider != "generic" ||
		req.Since.Sub(week).Abs() > time.Minute || req.RequestedAt.IsZero() {
		t.Fatalf("sync request: key %s, %+v", recs[0].Key, req)
	}
	for _, args := range [][]string{
		{"backfill", "--provider", "nope", "--since", "1d"},
		{"backfill", "--provider", "generic"},
		{"backfill", "--provider", "generic", "--since", "yesterday-ish"},
		{"backfill", "--provider", "generic", "--since", time.Now().Add(time.Hour).Format(time.RFC3339)},
	} {
		if r := run(t, args...); r.code != ExitError || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "reviewctl: ") {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one error line", args, r.code, r.stderr)
		}
	}
	if r := run(t, "backfill", "--provider", "generic", "--since", "2026-01-02", "--dry-run"); r.code != ExitOK || len(readAll(t, st, kafkax.TopicSyncRequests)) != 1 {
		t.Fatalf("backfill --dry-run: exit %d or it wrote a request", r.code)
	}

	// The table as the poller's migration 0020 makes it (a no-op when
	// this build has that migration).
	_, err := st.DB.Exec(ctx, `CREATE TABLE IF NOT EXISTS backfill_jobs (request_id text PRIMARY KEY, provider text NOT NULL,
		since timestamptz, status text NOT NULL DEFAULT 'queued', pages bigint NOT NULL DEFAULT 0, events bigint NOT NULL DEFAULT 0,
		cursor text, error text, requested_at timestamptz NOT NULL, requested_by text NOT NULL DEFAULT '', started_at timestamptz,
		updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)`)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Jobs         []store.BackfillJob `json:"jobs"`
		TableMissing bool                `json:"table_missing"`
	}
	if r := runJSON(t, &res, "backfill", "status", "--json"); r.code != ExitOK || res.TableMissing || len(res.Jobs) != 0 {
		t.Fatalf("backfill status of no jobs: exit %d, %+v", r.code, res)
	}
	_, err = st.DB.Exec(ctx, `INSERT INTO backfill_jobs (request_id, provider, since, status, pages, events, cursor, error,
			requested_at, requested_by, started_at, updated_at, finished_at)
		VALUES ($1, 'generic', now() - interval '7 days', 'running', 3, 250, 'page-4', NULL,
			now() - interval '1 minute', 'reviewctl:ops', now() - interval '50 seconds', now(), NULL),
		('bf_old', 'generic', NULL, 'failed', 1, 10, NULL, 'provider answered 500',
			now() - interval '2 days', '', now() - interval '2 days', now() - interval '2 days', now() - interval '2 days')`, id)
	if err != nil {
		t.Fatal(err)
	}
	r = run(t, "backfill", "status")
	if r.code != ExitOK || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "running") ||
		!strings.Contains(r.stdout, "provider answered 500") || !strings.Contains(r.stdout, "beginning") {
		t.Fatalf("backfill status: exit %d\n%s", r.code, r.stdout)
	}
	if strings.Index(r.stdout, id) > strings.Index(r.stdout, "bf_old") {
		t.Error("backfill status: newest first")
	}
	if r := runJSON(t, &res, "backfill", "status", "--json", "--limit", "1"); r.code != ExitOK || len(res.Jobs) != 1 ||
		res.Jobs[0].RequestID != id || res.Jobs[0].Pages != 3 || res.Jobs[0].Events != 250 || res.Jobs[0].FinishedAt != nil ||
		res.Jobs[0].RequestedBy != "reviewctl:ops" {
		t.Fatalf("backfill status --json: %+v", res.Jobs)
	}

	// Before the poller's table exists: a clear message, no error.
	if _, err := st.DB.Exec(ctx, `DROP TABLE backfill_jobs`); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "backfill", "status"); r.code != ExitOK || !strings.Contains(r.stdout, "backfill_jobs does not exist yet") {
		t.Fatalf("backfill status without the table: exit %d, %q", r.code, r.stdout)
	}
	if r := runJSON(t, &res, "backfill", "status", "--json"); r.code != ExitOK || !res.TableMissing || res.Jobs == nil {
		t.Fatalf("backfill status --json without the table: %+v", res)
	}
}

// A backfill queued by reviewctl reaches the real poller, which records the
// job; backfill status shows it.
func TestBackfillThroughPoller(t *testing.T) {
	st := newStack(t)
	// No provider answers there: the job is recorded, then retried or
	// failed, which is all this test looks at.
	startService(t, st, "poller", "POLLER_ADDR", "SIMULATOR_URL=http://"+testenv.FreeAddr(t))
	r := run(t, "backfill", "--provider", "generic", "--since", "2d")
	id := strings.TrimSpace(r.stdout)
	if r.code != ExitOK || id == "" {
		t.Fatalf("backfill: exit %d", r.code)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		var res struct {
			Jobs []store.BackfillJob `json:"jobs"`
		}
		var out, errb bytes.Buffer
		if code := newApp(&out, &errb).Run(context.Background(), []string{"backfill", "status", "--json"}); code != ExitOK {
			return fmt.Errorf("backfill status: exit %d: %s", code, errb.String())
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			return err
		}
		for _, j := range res.Jobs {
			if j.RequestID == id && j.Provider == "generic" && j.Since != nil && time.Since(*j.Since) > 47*time.Hour {
				return nil
			}
		}
		return fmt.Errorf("job %s not in backfill status: %+v", id, res.Jobs)
	})
}
