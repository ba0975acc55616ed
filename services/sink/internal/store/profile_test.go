package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

// walTotal sums the WAL that explain saw the backend write.
type walTotal struct{ records, fpi, bytes int64 }

var walSeen walTotal

// explain runs EXPLAIN (ANALYZE, BUFFERS, WAL) of sql in tx (which executes
// it) and logs the plan: time, buffers and the WAL the backend wrote for it
// (added to walSeen).
func explain(t *testing.T, tx pgx.Tx, name, sql string, args ...any) {
	t.Helper()
	rows, err := tx.Query(context.Background(), "EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) "+sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(l); len(f) > 1 && f[0] == "WAL:" && len(lines) > 0 && !strings.Contains(strings.Join(lines, "\n"), "WAL:") {
			// The top node's: the statement's whole.
			for _, kv := range f[1:] {
				k, v, _ := strings.Cut(kv, "=")
				n, _ := strconv.ParseInt(v, 10, 64)
				switch k {
				case "records":
					walSeen.records += n
				case "fpi":
					walSeen.fpi += n
				case "bytes":
					walSeen.bytes += n
				}
			}
		}
		if len(l) > 160 {
			l = l[:160] + "…"
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("== %s\n%s", name, strings.Join(lines, "\n"))
}

// TestProfileCurrent logs the plan, buffers and WAL of the read and the
// merge of one mix batch on the current path (SINK_PROFILE=1), rolled back.
func TestProfileCurrent(t *testing.T) {
	if os.Getenv("SINK_PROFILE") == "" {
		t.Skip("SINK_PROFILE=1 to profile")
	}
	walSeen = walTotal{}
	ctx := context.Background()
	db, _ := mixDB(t, "", KeyedPlans)
	s := New(db, 0)
	g := newMixGen(42, "mix-")
	var next int64
	for range 30 {
		cs := g.batch(next, mixBatch)
		if _, err := s.Apply(ctx, Position{Consumer: "bench", Topic: "normalized", First: next, Next: next + int64(mixBatch)}, cs); err != nil {
			t.Fatal(err)
		}
		next += int64(mixBatch)
	}
	winners, _ := batch.Collapse(g.batch(next, mixBatch))
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	explain(t, tx, "offset lock", `INSERT INTO consumer_offsets AS o (consumer, topic, partition, next_offset)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = o.next_offset
		RETURNING next_offset`, "bench", "normalized", 0, next)
	ids := make([]string, len(winners))
	for i := range winners {
		ids[i] = winners[i].Review.ID
	}
	explain(t, tx, "read", readSQL, ids)
	prev := map[string]stored{}
	rows, _ := tx.Query(ctx, readSQL, ids)
	for rows.Next() {
		var id string
		var r stored
		if err := rows.Scan(&id, &r.movie, &r.version, &r.deleted, &r.hash); err != nil {
			t.Fatal(err)
		}
		prev[id] = r
	}
	ins, upd := toSend(winners, prev)
	send := append(append([]batch.Write(nil), ins...), upd...)
	t.Logf("%d after collapse, %d sent, %d existing", len(winners), len(send), len(prev))
	explain(t, tx, "insert", insertStatements[0][0], append(columns(ins), make([]bool, len(ins)))...)
	explain(t, tx, "update", updateStatements[0], append(columns(upd), slices.Repeat([]bool{true}, len(upd)))...)
	var movies []string
	for i := range send {
		if m := send[i].Review.MovieID; m != "" {
			movies = append(movies, m)
		}
	}
	slices.Sort(movies)
	explain(t, tx, "movies", moviesSQL, slices.Compact(movies))
	explain(t, tx, "advance", `UPDATE consumer_offsets SET next_offset = GREATEST(next_offset, $4), updated_at = now()
	WHERE consumer = $1 AND topic = $2 AND partition = $3`, "bench", "normalized", 0, next+int64(mixBatch))
	t.Logf("WAL of the batch's statements (movies over the rows sent, a bound): %d records, %d full-page images, %d bytes; %.0f bytes per written row",
		walSeen.records, walSeen.fpi, walSeen.bytes, float64(walSeen.bytes)/float64(len(send)))
}

// TestProfileLegacy logs the plan, buffers and WAL of each statement of one
// mix batch on the legacy path (SINK_PROFILE=1), rolled back.
func TestProfileLegacy(t *testing.T) {
	if os.Getenv("SINK_PROFILE") == "" {
		t.Skip("SINK_PROFILE=1 to profile")
	}
	walSeen = walTotal{}
	ctx := context.Background()
	db, _ := mixDB(t, schemaBefore0011, nil)
	s := &legacyStore{db: db}
	g := newMixGen(42, "mix-")
	var next int64
	for range 30 {
		cs := g.batch(next, mixBatch)
		if _, err := s.Apply(ctx, Position{Consumer: "bench", Topic: "normalized", First: next, Next: next + int64(mixBatch)}, cs); err != nil {
			t.Fatal(err)
		}
		next += int64(mixBatch)
	}
	cs := g.batch(next, mixBatch)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	explain(t, tx, "offset lock", `INSERT INTO consumer_offsets AS o (consumer, topic, partition, next_offset)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = o.next_offset
		RETURNING next_offset`, "bench", "normalized", 0, next)
	winners, _ := batch.Collapse(cs)
	// The movies need the written rows: run the merge once for them in a
	// savepoint, then explain it on the same state.
	var written []Written
	if _, err := tx.Exec(ctx, "SAVEPOINT m"); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, legacyMergeSQL, columns(winners)...)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var w Written
		var pd bool
		if err := rows.Scan(&w.ID, &w.MovieID, &w.Deleted, &w.PrevMovie, &pd); err != nil {
			t.Fatal(err)
		}
		if pd {
			w.PrevMovie = ""
		}
		written = append(written, w)
	}
	if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT m"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records, %d after collapse, %d written, %d movies", len(cs), len(winners), len(written), len(changedMovies(written)))
	explain(t, tx, "merge", legacyMergeSQL, columns(winners)...)
	explain(t, tx, "movies", `INSERT INTO movies AS m (movie_id, last_changed_at)
				SELECT id, now() FROM unnest($1::text[]) AS id ORDER BY id
				ON CONFLICT (movie_id) DO UPDATE SET last_changed_at = GREATEST(m.last_changed_at, excluded.last_changed_at)`,
		changedMovies(written))
	explain(t, tx, "notify", `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, NotifyChannel, notices(written))
	explain(t, tx, "advance", `UPDATE consumer_offsets SET next_offset = GREATEST(next_offset, $4), updated_at = now()
	WHERE consumer = $1 AND topic = $2 AND partition = $3`, "bench", "normalized", 0, next+int64(mixBatch))
	t.Logf("WAL of the batch's statements: %d records, %d full-page images, %d bytes; %.0f bytes per written row",
		walSeen.records, walSeen.fpi, walSeen.bytes, float64(walSeen.bytes)/float64(len(written)))
}

// TestProfileSteps applies 30 mix batches after 30 of warm-up with each
// write path and logs the PostgreSQL backend's CPU per stored record of each
// round trip of Apply (the backend is idle between them, so the CPU it used
// during one is that round trip's) (SINK_PROFILE=1). SINK_BENCH_SQL applies
// to it too.
func TestProfileSteps(t *testing.T) {
	if os.Getenv("SINK_PROFILE") == "" {
		t.Skip("SINK_PROFILE=1 to profile")
	}
	for _, impl := range impls {
		ctx := context.Background()
		db, pid := mixDB(t, impl.setup, impl.settings)
		s := impl.make(db)
		g := newMixGen(42, "mix-")
		var next int64
		stored := 0
		apply := func() {
			cs := g.batch(next, mixBatch)
			res, err := s.Apply(ctx, Position{Consumer: "bench", Topic: "normalized", First: next, Next: next + int64(mixBatch)}, cs)
			if err != nil {
				t.Fatal(err)
			}
			next += int64(mixBatch)
			stored += len(res.Written)
		}
		for range 30 * 1000 / mixBatch {
			apply()
		}
		stored = 0
		cpu := map[string]time.Duration{}
		var order []string
		last, _ := backendCPU(pid)
		step := func(name string) {
			now, _ := backendCPU(pid)
			if _, ok := cpu[name]; !ok {
				order = append(order, name)
			}
			cpu[name] += now - last
			last = now
		}
		switch s := s.(type) {
		case *Store:
			s.step = step
		case *legacyStore:
			s.step = step
		}
		for range 30 * 1000 / mixBatch {
			last, _ = backendCPU(pid)
			apply()
		}
		var total time.Duration
		var b strings.Builder
		for _, name := range order {
			total += cpu[name]
			fmt.Fprintf(&b, "%-22s %6.2f µs/stored\n", name, float64(cpu[name])/1e3/float64(stored))
		}
		fmt.Fprintf(&b, "%-22s %6.2f µs/stored (%d stored of %d records)", "total", float64(total)/1e3/float64(stored), stored, 30*1000/mixBatch*mixBatch)
		t.Logf("%s:\n%s", impl.name, b.String())
	}
}
