package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/reviewpipe/reviewpipe/pkg/envelope"
	"github.com/reviewpipe/reviewpipe/pkg/kafkax"
	"github.com/reviewpipe/reviewpipe/pkg/provider"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/reconcile"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/store"
	"github.com/reviewpipe/reviewpipe/services/reviewctl/internal/testlog"
)

// seedLog writes n reviews' raw events to reviews.raw.v1 (1 to 3 versions
// each, some out of order, some twice, some deleted, plus two records the
// processor dead-letters) and, playing the sink, the matching rows to the
// store. It returns the ids by final state.
func seedLog(t *testing.T, st *testenv.Stack, n int) (live, deleted []string) {
	t.Helper()
	var msgs []kafka.Message
	for i := range n {
		id := fmt.Sprintf("rc-%03d", i)
		k := 1 + i%3
		var evs []kafka.Message
		for v := 1; v <= k; v++ {
			del := v == k && k >= 2 && i%5 == 0
			evs = append(evs, testlog.RawMessage(id, int64(v), del, fmt.Sprintf("review %d, take %d", i, v), fmt.Sprintf("evt_%s_%d", id, v)))
		}
		if i%4 == 0 {
			slices.Reverse(evs)
		}
		if i%3 == 0 {
			evs = append(evs, evs[len(evs)-1])
		}
		msgs = append(msgs, evs...)
		if k >= 2 && i%5 == 0 {
			deleted = append(deleted, "generic:"+id)
		} else {
			live = append(live, "generic:"+id)
		}
	}
	bad := testlog.RawMessage("rc-bad", 1, false, "x", "evt_bad")
	bad.Key = []byte("generic:someone-else")
	msgs = append(msgs, bad, kafka.Message{Key: []byte("generic:junk"), Value: []byte("{")})
	produce(t, st, kafkax.TopicRaw, msgs...)

	ctx := context.Background()
	for _, m := range msgs {
		ev, _, err := normalizeRecord(provider.Default(), &m, time.Now())
		if err != nil {
			continue
		}
		if _, err := applyGuarded(ctx, st.DB, ev); err != nil {
			t.Fatal(err)
		}
	}
	return live, deleted
}

func TestReconcileDriftAndRepair(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	live, deleted := seedLog(t, st, 60)

	var rep reconcile.Report
	if r := runJSON(t, &rep, "reconcile", "--json"); r.code != ExitOK || rep.Drift != 0 || rep.InSync != 60 || rep.StoreRows != 60 {
		t.Fatalf("reconcile of a store in sync: exit %d, drift %d, in sync %d, rows %d", r.code, rep.Drift, rep.InSync, rep.StoreRows)
	}
	if rep.Read.Invalid["key_mismatch"] != 1 || rep.Read.Invalid["invalid_envelope"] != 1 || rep.Read.Reviews != 60 {
		t.Fatalf("read report: %+v", rep.Read)
	}

	// Drift: N rows deleted (a tombstone among them), M rows set back to
	// an older version.
	gone := []string{live[0], live[7], deleted[1]}
	older := []string{}
	for _, id := range live[10:] {
		var v int64
		if err := st.DB.QueryRow(ctx, `SELECT version FROM reviews WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v >= 2 {
			older = append(older, id)
		}
		if len(older) == 2 {
			break
		}
	}
	if _, err := st.DB.Exec(ctx, `DELETE FROM reviews WHERE id = ANY($1)`, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.Exec(ctx, `UPDATE reviews SET version = version - 1, body = 'older' WHERE id = ANY($1)`, older); err != nil {
		t.Fatal(err)
	}
	before := tableHash(t, st.DB)
	r := runJSON(t, &rep, "reconcile", "--json")
	if r.code != ExitDrift || rep.Drift != len(gone)+len(older) || rep.Counts[reconcile.Missing] != len(gone) || rep.Counts[reconcile.Stale] != len(older) ||
		rep.Repairable != rep.Drift || rep.InSync != 60-rep.Drift {
		t.Fatalf("reconcile: exit %d, %+v; want exit 1 with %d missing and %d stale", r.code, rep.Counts, len(gone), len(older))
	}
	var ids []string
	for _, k := range []string{reconcile.Missing, reconcile.Stale} {
		for _, f := range rep.Examples[k] {
			ids = append(ids, f.ID)
		}
	}
	slices.Sort(ids)
	want := append(append([]string{}, gone...), older...)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("drifted ids %v, want %v", ids, want)
	}
	r = run(t, "reconcile")
	if r.code != ExitDrift || !strings.Contains(r.stdout, "missing     3") || !strings.Contains(r.stdout, "stale       2") ||
		!strings.Contains(r.stdout, "dry run: nothing changed") {
		t.Fatalf("reconcile text report:\n%s", r.stdout)
	}
	if tableHash(t, st.DB) != before || endOffsets(t, st, kafkax.TopicNormalized) != 0 {
		t.Fatal("a dry run changed something")
	}

	// --apply through the real sink.
	startService(t, st, "sink", "SINK_ADDR")
	r = runJSON(t, &rep, "reconcile", "--apply", "--json")
	if r.code != ExitOK || rep.Repair == nil || rep.Repair.Sent != 5 || rep.Repair.Repaired != 5 || len(rep.Repair.NotRepaired) != 0 {
		t.Fatalf("reconcile --apply: exit %d, repair %+v", r.code, rep.Repair)
	}
	repairs := readAll(t, st, kafkax.TopicNormalized)
	if len(repairs) != 5 {
		t.Fatalf("%d repair events, want 5", len(repairs))
	}
	for _, m := range repairs {
		if envelope.Header(m, kafkax.HeaderRepair) != "true" || !strings.Contains(string(m.Value), `"repair":true`) ||
			!slices.Contains(want, string(m.Key)) {
			t.Errorf("repair event %s: headers %v, value %s", m.Key, m.Headers, m.Value)
		}
	}
	if r := runJSON(t, &rep, "reconcile", "--json"); r.code != ExitOK || rep.Drift != 0 || rep.InSync != 60 {
		t.Fatalf("reconcile after the repair: exit %d, drift %d, in sync %d", r.code, rep.Drift, rep.InSync)
	}
	var runs int
	if err := st.DB.QueryRow(ctx, `SELECT count(*) FROM reconcile_runs WHERE repaired = 5 AND exit_code = 0`).Scan(&runs); err != nil || runs != 1 {
		t.Fatalf("reconcile_runs: %d rows, %v", runs, err)
	}
}

// Rows the normal path cannot repair are reported as such: a version
// newer than the log's (ahead), other content under the log's version and
// hash (mismatched). An extra row is removed by a delete at its version.
func TestReconcileUnrepairable(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	live, _ := seedLog(t, st, 20)
	ahead, changed := live[1], live[2]
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := st.DB.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE reviews SET version = 99 WHERE id = $1`, ahead)
	exec(`UPDATE reviews SET body = 'edited by hand' WHERE id = $1`, changed)
	exec(`INSERT INTO reviews (id, provider, external_id, movie_id, version, source_updated_at, ingested_at, content_hash)
		VALUES ('generic:ghost', 'generic', 'ghost', 'tt0111161', 4, now(), now(), 'abc')`)
	startService(t, st, "sink", "SINK_ADDR")

	var rep reconcile.Report
	r := runJSON(t, &rep, "reconcile", "--json")
	if r.code != ExitDrift || rep.Drift != 3 || rep.Counts[reconcile.Ahead] != 1 || rep.Counts[reconcile.Mismatched] != 1 ||
		rep.Counts[reconcile.Extra] != 1 || rep.Repairable != 1 {
		t.Fatalf("reconcile: exit %d, counts %+v, repairable %d", r.code, rep.Counts, rep.Repairable)
	}
	if f := rep.Examples[reconcile.Ahead][0]; f.ID != ahead || f.Repairable || !strings.Contains(f.Detail, "cannot") && !strings.Contains(f.Detail, "no event can repair") {
		t.Fatalf("ahead example: %+v", f)
	}
	// Deleting rows without events is bounded.
	r = runJSON(t, &rep, "reconcile", "--apply", "--max-deletes", "0", "--json")
	if r.code != ExitDrift || rep.Repairable != 0 || rep.Repair == nil || rep.Repair.Sent != 0 || !strings.Contains(strings.Join(rep.Notes, " "), "--max-deletes") {
		t.Fatalf("reconcile --apply --max-deletes 0: exit %d, repairable %d, repair %+v, notes %v", r.code, rep.Repairable, rep.Repair, rep.Notes)
	}
	r = run(t, "reconcile", "--apply")
	if r.code != ExitDrift || !strings.Contains(r.stdout, "1 reviews repaired") || !strings.Contains(r.stdout, "left: 2") {
		t.Fatalf("reconcile --apply with unrepairable rows:\n%s", r.stdout)
	}
	var deleted bool
	if err := st.DB.QueryRow(ctx, `SELECT deleted FROM reviews WHERE id = 'generic:ghost'`).Scan(&deleted); err != nil || !deleted {
		t.Fatalf("the extra review is not a tombstone now: %v, %v", deleted, err)
	}
	if r := runJSON(t, &rep, "reconcile", "--json"); r.code != ExitDrift || rep.Drift != 2 || rep.OrphanTombstones != 1 {
		t.Fatalf("after the repair: exit %d, drift %d, orphans %d; want 1, 2, 1", r.code, rep.Drift, rep.OrphanTombstones)
	}
}

func TestReconcileSinceAndProvider(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	old := testlog.RawMessage("old", 1, false, "old", "evt_old")
	old.Time = time.Now().Add(-48 * time.Hour)
	produce(t, st, kafkax.TopicRaw, old)
	live, _ := seedLog(t, st, 10)
	ev, _, err := normalizeRecord(provider.Default(), &old, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := applyGuarded(ctx, st.DB, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.Exec(ctx, `DELETE FROM reviews WHERE id = ANY($1)`, []string{"generic:old", live[3]}); err != nil {
		t.Fatal(err)
	}
	var rep reconcile.Report
	// Only the last day: the old review is outside the window.
	if r := runJSON(t, &rep, "reconcile", "--since", "24h", "--json"); r.code != ExitDrift || rep.Drift != 1 ||
		rep.Examples[reconcile.Missing][0].ID != live[3] || rep.Read.Reviews != 10 {
		t.Fatalf("reconcile --since: exit %d, drift %d, %+v", r.code, rep.Drift, rep.Examples)
	}
	if r := runJSON(t, &rep, "reconcile", "--json"); r.code != ExitDrift || rep.Drift != 2 {
		t.Fatalf("reconcile: exit %d, drift %d; want 1, 2", r.code, rep.Drift)
	}
	if r := runJSON(t, &rep, "reconcile", "--provider", "cinescore", "--json"); r.code != ExitOK || rep.Drift != 0 || rep.Read.OtherProvider != rep.Read.Records {
		t.Fatalf("reconcile --provider cinescore: exit %d, drift %d, read %+v", r.code, rep.Drift, rep.Read)
	}
}

// A second reconcile against the same database is refused while one runs.
func TestReconcileLock(t *testing.T) {
	st := newStack(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, store.ReconcileLock); err != nil {
		t.Fatal(err)
	}
	r := run(t, "reconcile")
	if r.code != ExitError || !strings.Contains(r.stderr, "another reconcile is running") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("concurrent reconcile: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, store.ReconcileLock); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "reconcile"); r.code != ExitOK || !strings.Contains(r.stdout, "in sync") {
		t.Fatalf("reconcile of an empty log and store: exit %d\n%s", r.code, r.stdout)
	}
	if r := run(t, "reconcile", "-h"); r.code != ExitOK || !strings.Contains(r.stderr, "usage: reviewctl reconcile") {
		t.Fatalf("reconcile -h: exit %d", r.code)
	}
}
