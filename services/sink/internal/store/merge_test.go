package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

// dump returns every reviews row (all columns but committed_at) and every
// movie id, in a comparable form.
func dump(t *testing.T, db *pgxpool.Pool) (reviews, movies []string) {
	t.Helper()
	ctx := context.Background()
	rows, err := db.Query(ctx, `SELECT concat_ws('|', id, provider, external_id, movie_id, author, rating, title, body,
		language, url, version, deleted, content_hash, source_updated_at, ingested_at, accepted_at) FROM reviews ORDER BY id COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		reviews = append(reviews, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = db.Query(ctx, `SELECT movie_id FROM movies ORDER BY movie_id COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		movies = append(movies, s)
	}
	return reviews, movies
}

// summary is a Result without its times, written rows sorted.
func summary(r Result) string {
	ws := make([]string, len(r.Written))
	for i, w := range r.Written {
		ws[i] = fmt.Sprintf("%s@%s<-%s del=%v", w.ID, w.MovieID, w.PrevMovie, w.Deleted)
	}
	slices.Sort(ws)
	return fmt.Sprintf("replayed=%d superseded=%d stale=%d movies=%v written=%v", r.Replayed, r.Superseded, r.Stale, r.Movies, ws)
}

// randomChange makes a change of one of few keys over few movies: upserts
// (moving between movies now and then), deletes with and without a movie,
// versions out of order, same-version variants.
func randomChange(rng *rand.Rand, keys int) batch.Write {
	ext := "k" + strconv.Itoa(rng.IntN(keys))
	v := int64(1 + rng.IntN(6))
	movie := fmt.Sprintf("tt%07d", 1+rng.IntN(4))
	switch rng.IntN(10) {
	case 0:
		return del(ext, "", v)
	case 1:
		return del(ext, movie, v)
	default:
		// Titles from a small set, so same-version variants and exact
		// duplicates both occur.
		return upsert(ext, movie, v, "t"+strconv.Itoa(rng.IntN(3)))
	}
}

// The merge settles every batch exactly as the legacy statement did: the
// same rows, the same written, stale and superseded counts, the same movies,
// on random batches of few keys (so that one key appears several times per
// batch with versions out of order, deletes come before older upserts,
// equal versions conflict), some handed twice, with both write methods.
func TestMergeMatchesLegacy(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for _, method := range methods {
		t.Run(method.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			ctx := context.Background()
			oldDB, _ := mixDB(t, schemaBefore0011, nil)
			newDB, _ := mixDB(t, "", KeyedPlans)
			old, cur := &legacyStore{db: oldDB}, New(newDB, method.copyFrom)
			var next int64
			for round := range 150 {
				n := 1 + rng.IntN(25)
				cs := make([]batch.Write, n)
				for i := range cs {
					cs[i] = randomChange(rng, 12)
					cs[i].Offset = next + int64(i)
				}
				pos := Position{Consumer: "sink", Topic: "normalized", First: next, Next: next + int64(n)}
				if rng.IntN(8) == 0 && next > 0 {
					// A batch straddling the stored offset: its head is replayed.
					back := int64(1 + rng.IntN(int(min(next, 5))))
					pos.First -= back
					for i := range cs {
						cs[i].Offset -= back
					}
					pos.Next -= back
				}
				want, err := old.Apply(ctx, pos, cs)
				if err != nil {
					t.Fatal(err)
				}
				got, err := cur.Apply(ctx, pos, cs)
				if err != nil {
					t.Fatal(err)
				}
				if summary(got) != summary(want) {
					t.Fatalf("round %d: batch %v\ngot  %s\nwant %s", round, cs, summary(got), summary(want))
				}
				next = max(next, pos.Next)
			}
			wr, wm := dump(t, oldDB)
			gr, gm := dump(t, newDB)
			if strings.Join(gr, "\n") != strings.Join(wr, "\n") || fmt.Sprint(gm) != fmt.Sprint(wm) {
				t.Fatalf("stores differ:\ngot  %v\n%v\nwant %v\n%v", gr, gm, wr, wm)
			}
		})
	}
}

// One batch with one key several times, versions out of order, a delete
// before older upserts and an equal-version conflict: the greatest change
// is stored, as the processor's order says.
func TestMergeOneKeyManyTimes(t *testing.T) {
	st := testenv.New(t)
	for p, method := range methods {
		a := &applier{t: t, s: New(st.DB, method.copyFrom), partition: p}
		ext := method.name + "-many"
		a.apply(upsert(ext, "tt0000001", 2, "two"))
		x, y := upsert(ext, "tt0000001", 5, "x"), upsert(ext, "tt0000001", 5, "y")
		top := x
		if y.Hash > x.Hash {
			top = y
		}
		res := a.apply(upsert(ext, "tt0000001", 4, "four"), del(ext, "", 3), x, upsert(ext, "tt0000001", 1, "one"), y,
			upsert(ext, "tt0000001", 3, "three"))
		if len(res.Written) != 1 || res.Superseded != 5 {
			t.Fatalf("%s: %s", method.name, summary(res))
		}
		if r, _ := readRow(t, st, top.Review.ID); r.version != 5 || r.title != top.Review.Title || r.deleted {
			t.Fatalf("%s: stored %+v, want version 5 %q", method.name, r, top.Review.Title)
		}
		// A delete at the same version beats both; older upserts after it
		// change nothing.
		res = a.apply(del(ext, "", 5), upsert(ext, "tt0000001", 4, "late"))
		if r, _ := readRow(t, st, top.Review.ID); len(res.Written) != 1 || !r.deleted || r.version != 5 || r.movie != "tt0000001" {
			t.Fatalf("%s: %s; stored %+v, want a tombstone at 5 that kept its movie", method.name, summary(res), r)
		}
		res = a.apply(upsert(ext, "tt0000001", 5, "z"), upsert(ext, "tt0000001", 2, "old"))
		if len(res.Written) != 0 || res.Stale != 1 {
			t.Fatalf("%s: an upsert at or below the tombstone's version: %s", method.name, summary(res))
		}
	}
}

// The write's two fallbacks: a row that appeared after the read (the plain
// INSERT fails with a unique violation, the write is done again under ON
// CONFLICT and the guard), and a row read that is gone (the UPDATE writes
// nothing, the change is inserted, as new: no movie before it).
func TestMergeFallbacks(t *testing.T) {
	st := testenv.New(t)
	ctx := context.Background()
	for p, method := range methods {
		s := New(st.DB, method.copyFrom)
		a := &applier{t: t, s: s, partition: p}
		pre := method.name + "-fb-"
		a.apply(upsert(pre+"a", "tt0000001", 2, "stored"), upsert(pre+"b", "tt0000001", 2, "stored"))
		tx, err := st.DB.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// As if the read had found neither a nor b, nor c.
		ws, err := s.write(ctx, tx, []batch.Write{upsert(pre+"a", "tt0000001", 3, "newer"), upsert(pre+"b", "tt0000001", 1, "older"),
			upsert(pre+"c", "tt0000002", 1, "new")}, map[string]stored{}, false)
		if err != nil {
			t.Fatal(err)
		}
		// As if the read had found d, at version 1: it is not there.
		more, err := s.write(ctx, tx, []batch.Write{upsert(pre+"d", "tt0000002", 2, "gone")},
			map[string]stored{"generic:" + pre + "d": {movie: "tt0000002", version: 1, hash: "0"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got := summary(Result{Written: append(ws, more...)})
		want := fmt.Sprintf("replayed=0 superseded=0 stale=0 movies=[] written=[generic:%[1]sa@tt0000001<- del=false generic:%[1]sc@tt0000002<- del=false generic:%[1]sd@tt0000002<- del=false]", pre)
		if got != want {
			t.Fatalf("%s:\ngot  %s\nwant %s", method.name, got, want)
		}
		for ext, title := range map[string]string{"a": "newer", "b": "stored", "c": "new", "d": "gone"} {
			if r, ok := readRow(t, st, "generic:"+pre+ext); !ok || r.title != title {
				t.Fatalf("%s: %s stored %+v, want %q", method.name, ext, r, title)
			}
		}
	}
}
