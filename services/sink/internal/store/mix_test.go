package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/pgstore"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

// mixBatch is the default SINK_MAX_BATCH (main.go, app.Config): under load
// every batch is this size. SINK_MIX_BATCH changes it (smaller batches: a
// sink that keeps up, whose batches are what arrived during the last
// transaction).
var mixBatch = func() int {
	if n, err := strconv.Atoi(os.Getenv("SINK_MIX_BATCH")); err == nil && n > 0 {
		return n
	}
	return 1000
}()

// mixMovies is the number of movies the keys spread over, as in make bench
// (bench/internal/load.Movies): a batch of 1000 touches about 630.
const mixMovies = 1000

// mixGen makes a realistic stream of normalized changes: mostly new keys
// and newer versions of recent keys, some deletes (half without a movie),
// exact resends, stale older versions and same-version variants, with
// bodies of 100 to 1500 characters. It remembers the greatest change of
// every key so updates, resends and stale versions are what they claim.
type mixGen struct {
	rng    *rand.Rand
	prefix string
	keys   []mixKey
	n      int
}

type mixKey struct {
	ext   string
	movie string
	top   batch.Write // the greatest change made so far
}

var mixText = func() string {
	words := strings.Fields(`the pacing drags in the second act but the ending earns its keep the score carries
		scenes the script cannot and the lead gives the part more than it asks for a quiet film about grief that
		never settles for easy answers photographed with patience and cut with a rhythm that rewards attention
		some jokes land others do not the supporting cast is uneven yet the final reel is worth the wait`)
	var b strings.Builder
	r := rand.New(rand.NewPCG(1, 2))
	for b.Len() < 64<<10 {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}()

func newMixGen(seed uint64, prefix string) *mixGen {
	return &mixGen{rng: rand.New(rand.NewPCG(seed, 11)), prefix: prefix}
}

func (g *mixGen) text(min, max int) string {
	n := min + g.rng.IntN(max-min+1)
	at := g.rng.IntN(len(mixText) - n)
	return mixText[at : at+n]
}

func (g *mixGen) upsert(k *mixKey, version int64) batch.Write {
	rating := g.rng.IntN(101)
	r := review.Review{ID: review.Key("generic", k.ext), Provider: "generic", ExternalID: k.ext, MovieID: k.movie,
		Author: "Reader " + strconv.Itoa(g.rng.IntN(5000)), Rating: &rating, Title: g.text(10, 60),
		Body: g.text(100, 1500), Language: "en", URL: "https://example.com/r/" + k.ext, Version: version,
		SourceUpdatedAt: t0.Add(time.Duration(g.n) * time.Second), IngestedAt: t0.Add(time.Duration(g.n)*time.Second + time.Minute)}
	return batch.Write{Review: r, Hash: review.ContentHash(review.OpUpsert, r), AcceptedAt: t0.Add(time.Duration(g.n) * time.Second)}
}

func (g *mixGen) delete(k *mixKey, version int64) batch.Write {
	r := review.Review{ID: review.Key("generic", k.ext), Provider: "generic", ExternalID: k.ext, Version: version,
		SourceUpdatedAt: t0.Add(time.Duration(g.n) * time.Second), IngestedAt: t0.Add(time.Duration(g.n)*time.Second + time.Minute)}
	if g.rng.IntN(2) == 0 {
		r.MovieID = k.movie
	}
	return batch.Write{Review: r, Deleted: true, Hash: review.ContentHash(review.OpDelete, r)}
}

// next returns the next change: 55 % new keys, 25 % newer versions of a
// recent key, 5 % deletes, 8 % exact resends, 4 % older versions, 3 %
// same-version variants.
func (g *mixGen) next() batch.Write {
	g.n++
	p := g.rng.IntN(100)
	if p < 55 || len(g.keys) == 0 {
		k := mixKey{ext: g.prefix + strconv.Itoa(len(g.keys)), movie: fmt.Sprintf("tt%07d", 1000000+g.rng.IntN(mixMovies))}
		k.top = g.upsert(&k, 1)
		g.keys = append(g.keys, k)
		return k.top
	}
	recent := min(len(g.keys), 20000)
	k := &g.keys[len(g.keys)-1-g.rng.IntN(recent)]
	v := k.top.Review.Version
	var c batch.Write
	switch {
	case p < 80:
		c = g.upsert(k, v+1)
	case p < 85:
		c = g.delete(k, v+1)
	case p < 93:
		return k.top
	case p < 97 && v > 1:
		return g.upsert(k, v-1)
	default:
		c = g.upsert(k, v)
	}
	if c.Entry().Compare(k.top.Entry()) > 0 {
		k.top = c
	}
	return c
}

func (g *mixGen) batch(first int64, n int) []batch.Write {
	cs := make([]batch.Write, n)
	for i := range cs {
		cs[i] = g.next()
		cs[i].Offset = first + int64(i)
	}
	return cs
}

type batchApplier interface {
	Apply(ctx context.Context, pos Position, changes []batch.Write) (Result, error)
}

// impls are the write paths BenchmarkApplyMix compares: legacy is the
// sink before the cheaper merge, on the schema before migration 0011
// (restored by its setup), current is this package on the current schema.
var impls = []struct {
	name     string
	setup    string
	settings map[string]string // of the connection, as the sink's main opens it
	make     func(*pgxpool.Pool) batchApplier
}{
	{"legacy", schemaBefore0011, nil, func(db *pgxpool.Pool) batchApplier { return &legacyStore{db: db} }},
	{"current", "", KeyedPlans, func(db *pgxpool.Pool) batchApplier { return New(db, DefaultCopyFrom) }},
}

// schemaBefore0011 undoes migration 0011 (ids back to the database's
// collation).
const schemaBefore0011 = `ALTER TABLE reviews ALTER COLUMN id TYPE text COLLATE "default",
	ALTER COLUMN movie_id TYPE text COLLATE "default";
ALTER TABLE movies ALTER COLUMN movie_id TYPE text COLLATE "default"`

// backendCPU returns the CPU time the PostgreSQL backend pid has used
// (PostgreSQL runs on this machine): /proc/<pid>/schedstat's first field,
// in nanoseconds.
func backendCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/%d/schedstat: empty", pid)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	return time.Duration(ns), err
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mixDB makes a fresh migrated database, runs setup on it, and returns a
// pool of one connection with settings on it and that connection's backend
// pid.
func mixDB(tb testing.TB, setup string, settings map[string]string) (*pgxpool.Pool, int) {
	tb.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		tb.Skip("needs DATABASE_URL")
	}
	ctx := context.Background()
	url := testenv.NewDatabase(tb, base, "b_"+testenv.RandomID())
	db, err := pgstore.OpenWith(ctx, url, 1, settings)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		tb.Fatal(err)
	}
	if setup != "" {
		if _, err := db.Exec(ctx, setup); err != nil {
			tb.Fatal(err)
		}
	}
	if sql := os.Getenv("SINK_BENCH_SQL"); sql != "" {
		// An experiment: schema changes to try before writing them as a
		// migration.
		if _, err := db.Exec(ctx, sql); err != nil {
			tb.Fatal(err)
		}
	}
	var pid int
	if err := db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		tb.Fatal(err)
	}
	return db, pid
}

// BenchmarkApplyMix measures one partition's batches of the default size
// (1000 records of mixGen's mix, after 30 batches of warm-up) with each
// write path, on a fresh database each, and reports beside the sink's
// ns/op the PostgreSQL backend's CPU per record and per stored record
// (a row actually written; resends, stale versions and changes superseded
// in the batch are not) (from /proc: the one
// connection's backend; autovacuum, the WAL writer and the checkpointer are
// not counted) and the sink process's own CPU per record. Run, old and new
// interleaved by -count:
//
//	go test -run '^$' -bench ApplyMix -benchtime 40x -count 5 ./internal/store/
func BenchmarkApplyMix(b *testing.B) {
	for _, impl := range impls {
		b.Run(impl.name, func(b *testing.B) {
			ctx := context.Background()
			db, pid := mixDB(b, impl.setup, impl.settings)
			s := impl.make(db)
			g := newMixGen(42, "mix-")
			var next int64
			stored := 0
			apply := func() {
				cs := g.batch(next, mixBatch)
				pos := Position{Consumer: "bench", Topic: "normalized", First: next, Next: next + int64(mixBatch)}
				res, err := s.Apply(ctx, pos, cs)
				if err != nil {
					b.Fatal(err)
				}
				next = pos.Next
				stored += len(res.Written)
			}
			for range 30 * 1000 / mixBatch {
				apply()
			}
			if f := os.Getenv("SINK_BENCH_PIDFILE"); f != "" {
				// For a profiler: the backend to attach to.
				if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0o644); err != nil {
					b.Fatal(err)
				}
			}
			pg0, err := backendCPU(pid)
			if err != nil {
				b.Fatalf("backend CPU: %v", err)
			}
			self0 := selfCPU()
			n, stored0 := 0, stored
			for b.Loop() {
				apply()
				n += mixBatch
			}
			self1 := selfCPU()
			pg1, err := backendCPU(pid)
			if err != nil {
				b.Fatalf("backend CPU: %v", err)
			}
			var pidAfter int
			if err := db.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pidAfter); err != nil || pidAfter != pid {
				b.Fatalf("the pool changed connections (%d, then %d, %v): the CPU figure is not one backend's", pid, pidAfter, err)
			}
			b.ReportMetric(float64(pg1-pg0)/1e3/float64(stored-stored0), "pg-cpu-µs/stored")
			b.ReportMetric(float64(pg1-pg0)/1e3/float64(n), "pg-cpu-µs/record")
			b.ReportMetric(float64(stored-stored0)/float64(n), "stored/record")
			b.ReportMetric(float64(self1-self0)/1e3/float64(n), "sink-cpu-µs/record")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
