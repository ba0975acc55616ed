package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
)

// TestPlansStayKeyedAsTheTableGrows: the sink's statements keep index
// plans when their plans were made on a small table that then grew. The
// connection is made to use generic plans from the first execution
// (plan_cache_mode = force_generic_plan), the worst case of what
// PostgreSQL may choose after five: the plans are made while reviews has a
// handful of rows, 20,000 rows arrive, and the cached plans of the write
// path must still reach reviews and movies through their indexes. Without
// KeyedPlans they are sequential scans and hash joins over whole tables.
// Both write methods: UNNEST, and COPY through the staging table.
func TestPlansStayKeyedAsTheTableGrows(t *testing.T) {
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		t.Skip("needs DATABASE_URL")
	}
	for _, method := range methods {
		t.Run(method.name, func(t *testing.T) {
			ctx := context.Background()
			settings := map[string]string{"plan_cache_mode": "force_generic_plan"}
			for k, v := range KeyedPlans {
				settings[k] = v
			}
			url := testenv.NewDatabase(t, base, "p_"+testenv.RandomID())
			db, err := pgstore.OpenWith(ctx, url, 1, settings) // one connection: its cached plans are the ones read
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := pgstore.Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			a := &applier{t: t, s: New(db, method.copyFrom)}
			// Batches that insert and update, on a table of a few rows.
			for i := range 8 {
				a.apply(upsert(fmt.Sprintf("small-%d", i), "tt0000001", 1, "new"),
					upsert(fmt.Sprintf("small-%d", max(0, i-1)), "tt0000002", 2+int64(i), "newer"))
			}
			if _, err := db.Exec(ctx, `INSERT INTO reviews (id, provider, external_id, movie_id, title, body,
					version, source_updated_at, ingested_at)
				SELECT 'grown-' || g, 'generic', 'grown-' || g, 'tt' || lpad((g % 2000)::text, 7, '0'), 'grown', 'body',
					1, now(), now() FROM generate_series(1, 20000) g`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(ctx, `INSERT INTO movies (movie_id, last_changed_at) SELECT DISTINCT movie_id, now() FROM reviews
				ON CONFLICT DO NOTHING`); err != nil {
				t.Fatal(err)
			}
			a.apply(upsert("after-growth", "tt0000003", 1, "new"), upsert("small-1", "tt0000003", 20, "newest"))

			rows, err := db.Query(ctx, `SELECT name, statement, cardinality(parameter_types)
				FROM pg_prepared_statements WHERE statement ~ '(FROM|UPDATE|INTO) (reviews|movies)'`)
			if err != nil {
				t.Fatal(err)
			}
			type stmt struct {
				name, text string
				params     int
			}
			var stmts []stmt
			for rows.Next() {
				var s stmt
				if err := rows.Scan(&s.name, &s.text, &s.params); err != nil {
					t.Fatal(err)
				}
				stmts = append(stmts, s)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(stmts) < 3 {
				t.Fatalf("%d cached statements on reviews and movies, want the read, the insert, the update and the movies' (%v)",
					len(stmts), stmts)
			}
			for _, s := range stmts {
				args := strings.TrimSuffix(strings.Repeat("NULL, ", s.params), ", ")
				explain := "EXPLAIN EXECUTE " + s.name
				if s.params > 0 {
					explain += "(" + args + ")"
				}
				prows, err := db.Query(ctx, explain)
				if err != nil {
					t.Fatalf("%s: %v", explain, err)
				}
				var plan []string
				for prows.Next() {
					var line string
					if err := prows.Scan(&line); err != nil {
						t.Fatal(err)
					}
					plan = append(plan, line)
				}
				if err := prows.Err(); err != nil {
					t.Fatal(err)
				}
				text := strings.Join(plan, "\n")
				for _, bad := range []string{"Seq Scan on reviews", "Seq Scan on movies", "Hash Join", "Merge Join"} {
					if strings.Contains(text, bad) {
						t.Errorf("statement\n%s\nhas a plan made on the small table with %q:\n%s", oneLine(s.text), bad, text)
					}
				}
			}
		})
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
