package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/pkg/testenv"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func upsert(ext, movie string, version int64, title string) batch.Write {
	rating := int(version*7) % 101
	r := review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext, MovieID: movie,
		Author: "Ann", Rating: &rating, Title: title, Body: "body of " + title, Language: "en",
		URL: "https://example.com/" + ext, Version: version, SourceUpdatedAt: t0.Add(time.Duration(version) * time.Minute),
		IngestedAt: t0.Add(time.Hour)}
	return batch.Write{Review: r, Hash: review.ContentHash(review.OpUpsert, r), AcceptedAt: time.Now()}
}

func del(ext, movie string, version int64) batch.Write {
	r := review.Review{ID: review.Key("generic", ext), Provider: "generic", ExternalID: ext, MovieID: movie,
		Version: version, SourceUpdatedAt: t0.Add(time.Duration(version) * time.Minute), IngestedAt: t0.Add(time.Hour)}
	return batch.Write{Review: r, Deleted: true, Hash: review.ContentHash(review.OpDelete, r)}
}

// applier applies batches at consecutive offsets of one partition.
type applier struct {
	t         testing.TB
	s         *Store
	partition int
	next      int64
}

func (a *applier) apply(cs ...batch.Write) Result {
	a.t.Helper()
	cs = append([]batch.Write(nil), cs...)
	pos := Position{Consumer: "sink", Topic: "normalized", Partition: a.partition, First: a.next, Next: a.next + int64(len(cs))}
	for i := range cs {
		cs[i].Offset = a.next + int64(i)
	}
	res, err := a.s.Apply(context.Background(), pos, cs)
	if err != nil {
		a.t.Fatal(err)
	}
	a.next = pos.Next
	return res
}

type storedRow struct {
	movie   string
	title   string
	version int64
	deleted bool
	hash    string
}

func readRow(t testing.TB, st *testenv.Stack, id string) (storedRow, bool) {
	t.Helper()
	var r storedRow
	err := st.DB.QueryRow(context.Background(), `SELECT COALESCE(movie_id, ''), title, version, deleted, content_hash
		FROM reviews WHERE id = $1`, id).Scan(&r.movie, &r.title, &r.version, &r.deleted, &r.hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, true
}

// methods: always UNNEST, always COPY.
var methods = []struct {
	name     string
	copyFrom int
}{{"unnest", 0}, {"copy", 1}}

// Duplicated and reordered batches, with deletes and same-version variants,
// settle on the greatest change per id in the processor's order, with both
// write methods.
func TestApplySettlesOnTheGreatestChange(t *testing.T) {
	st := testenv.New(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for p, method := range methods {
		t.Run(method.name, func(t *testing.T) {
			prefix := method.name + "-"
			var all []batch.Write
			for i := range 40 {
				ext := prefix + strconv.Itoa(i)
				for v := int64(1); v <= 4; v++ {
					all = append(all, upsert(ext, "tt0000001", v, fmt.Sprintf("v%d", v)))
					if rng.IntN(3) == 0 { // a same-version variant: the tie rule decides
						all = append(all, upsert(ext, "tt0000001", v, fmt.Sprintf("v%d-variant", v)))
					}
				}
				if rng.IntN(2) == 0 {
					all = append(all, del(ext, "", int64(2+rng.IntN(3))))
				}
			}
			want := map[string]batch.Write{}
			for _, c := range all {
				if w, ok := want[c.Review.ID]; !ok || c.Entry().Compare(w.Entry()) > 0 {
					want[c.Review.ID] = c
				}
			}
			// Every change twice, shuffled, in batches of random size.
			stream := append(append([]batch.Write(nil), all...), all...)
			rng.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
			a := &applier{t: t, s: New(st.DB, method.copyFrom), partition: p}
			written := 0
			for len(stream) > 0 {
				n := min(len(stream), 1+rng.IntN(60))
				written += len(a.apply(stream[:n]...).Written)
				stream = stream[n:]
			}
			for id, w := range want {
				got, ok := readRow(t, st, id)
				if !ok {
					t.Fatalf("%s: no row", id)
				}
				if got.version != w.Review.Version || got.deleted != w.Deleted || got.hash != w.Hash ||
					(!w.Deleted && got.title != w.Review.Title) {
					t.Fatalf("%s: stored %+v, want version %d deleted %v title %q", id, got, w.Review.Version, w.Deleted, w.Review.Title)
				}
				// A tombstone that came first without a movie has none.
				if got.movie != "tt0000001" && !(w.Deleted && got.movie == "") {
					t.Fatalf("%s: movie %q, want it kept from the upserts", id, got.movie)
				}
			}
			if written > len(all) {
				t.Fatalf("%d rows written for %d distinct changes: something was applied twice", written, len(all))
			}
		})
	}
}

func TestApplySkipsOffsetsAlreadyApplied(t *testing.T) {
	st := testenv.New(t)
	s := New(st.DB, 0)
	cs := make([]batch.Write, 10)
	for i := range cs {
		cs[i] = upsert("r"+strconv.Itoa(i), "tt0000002", 1, "t")
		cs[i].Offset = int64(i)
	}
	pos := Position{Consumer: "sink", Topic: "normalized", Partition: 3, First: 0, Next: 10}
	res, err := s.Apply(context.Background(), pos, cs)
	if err != nil || len(res.Written) != 10 {
		t.Fatalf("first apply: %d written, %v", len(res.Written), err)
	}
	// The same batch again: nothing.
	res, err = s.Apply(context.Background(), pos, cs)
	if err != nil || res.Replayed != 10 || len(res.Written) != 0 {
		t.Fatalf("replayed batch: %+v, %v; want all 10 replayed", res, err)
	}
	// A batch straddling the stored offset: only the new part counts, even
	// a newer version of an already applied offset's review.
	more := []batch.Write{upsert("r8", "tt0000002", 2, "x"), upsert("r9", "tt0000002", 2, "x"), upsert("r10", "tt0000002", 1, "t")}
	for i := range more {
		more[i].Offset = int64(8 + i)
	}
	res, err = s.Apply(context.Background(), Position{Consumer: "sink", Topic: "normalized", Partition: 3, First: 8, Next: 11}, more)
	if err != nil || res.Replayed != 2 || len(res.Written) != 1 || res.Written[0].ID != "generic:r10" {
		t.Fatalf("straddling batch: %+v, %v; want 2 replayed and r10 written", res, err)
	}
	if r, _ := readRow(t, st, "generic:r8"); r.version != 1 {
		t.Fatalf("r8 at version %d: a replayed offset was applied", r.version)
	}
	next, ok, err := s.NextOffset(context.Background(), "sink", "normalized", 3)
	if err != nil || !ok || next != 11 {
		t.Fatalf("stored next offset %d %v %v, want 11", next, ok, err)
	}
	if _, ok, _ := s.NextOffset(context.Background(), "sink", "normalized", 4); ok {
		t.Fatal("an unused partition has a stored offset")
	}
}

func lastChanged(t *testing.T, st *testenv.Stack, movie string) (time.Time, bool) {
	t.Helper()
	var at time.Time
	err := st.DB.QueryRow(context.Background(), `SELECT last_changed_at FROM movies WHERE movie_id = $1`, movie).Scan(&at)
	if errors.Is(err, pgx.ErrNoRows) {
		return at, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return at, true
}

func TestDeletesAndMovieChanges(t *testing.T) {
	st := testenv.New(t)
	a := &applier{t: t, s: New(st.DB, 0)}
	const movie = "tt0000003"

	res := a.apply(upsert("d1", movie, 2, "hello"))
	if len(res.Movies) != 1 || res.Movies[0] != movie {
		t.Fatalf("new review changed movies %v", res.Movies)
	}
	first, ok := lastChanged(t, st, movie)
	if !ok {
		t.Fatal("no movies row after the first review")
	}
	// A stale upsert and an exact duplicate change nothing, not even last_changed_at.
	res = a.apply(upsert("d1", movie, 1, "old"), upsert("d1", movie, 2, "hello"))
	if len(res.Written) != 0 || res.Stale != 1 || res.Superseded != 1 || len(res.Movies) != 0 {
		t.Fatalf("stale batch: %+v", res)
	}
	if at, _ := lastChanged(t, st, movie); !at.Equal(first) {
		t.Fatalf("last_changed_at moved from %s to %s without a change", first, at)
	}
	// A delete without movie_id keeps the row's movie and its version.
	res = a.apply(del("d1", "", 3))
	if len(res.Written) != 1 || len(res.Movies) != 1 {
		t.Fatalf("delete: %+v", res)
	}
	r, _ := readRow(t, st, "generic:d1")
	if !r.deleted || r.version != 3 || r.movie != movie || r.title != "" {
		t.Fatalf("tombstone %+v: want deleted at version 3, movie kept, content gone", r)
	}
	// An upsert older than the delete does not bring it back; nor does one
	// of the delete's own version.
	res = a.apply(upsert("d1", movie, 2, "again"), upsert("d1", movie, 3, "same version"))
	if len(res.Written) != 0 {
		t.Fatalf("an upsert at or below the delete's version was written: %+v", res)
	}
	// A tombstone for a review never seen changes no movie.
	res = a.apply(del("ghost", movie, 1))
	if len(res.Written) != 1 || len(res.Movies) != 0 {
		t.Fatalf("orphan tombstone: %+v", res)
	}
	// A newer upsert revives it.
	res = a.apply(upsert("d1", movie, 4, "back"))
	if len(res.Written) != 1 || len(res.Movies) != 1 {
		t.Fatalf("revive: %+v", res)
	}
	// A review that moves to another movie changes both.
	res = a.apply(upsert("d1", "tt0000004", 5, "moved"))
	if fmt.Sprint(res.Movies) != "[tt0000003 tt0000004]" {
		t.Fatalf("moved review changed %v, want both movies", res.Movies)
	}
}

func TestNotifiesOnlyOnCommit(t *testing.T) {
	st := testenv.New(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		t.Fatal(err)
	}
	s := New(st.DB, 0)
	// A batch PostgreSQL refuses (a rating outside the column's check)
	// rolls back and announces nothing.
	bad := upsert("n2", "tt0000005", 1, "bad")
	r := 200
	bad.Review.Rating = &r
	if _, err := s.Apply(ctx, Position{Consumer: "sink", Topic: "n", First: 0, Next: 1}, []batch.Write{bad}); err == nil {
		t.Fatal("a rating of 200 was stored")
	}
	good := upsert("n1", "tt0000005", 1, "good")
	if _, err := s.Apply(ctx, Position{Consumer: "sink", Topic: "n", First: 0, Next: 1}, []batch.Write{good}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := changefeed.Parse(n.Payload)
	if err != nil || len(ns) != 1 || ns[0].MovieID != "tt0000005" || fmt.Sprint(ns[0].IDs) != "[generic:n1]" {
		t.Fatalf("notices %+v (%v), want the committed review only", ns, err)
	}
}

func TestNoticesFitPostgresLimit(t *testing.T) {
	var ws []Written
	for i := range 1000 {
		ws = append(ws, Written{ID: fmt.Sprintf("generic:a-rather-long-review-id-%04d", i), MovieID: "tt0000001"})
	}
	ns := notices(ws)
	if len(ns) != 1 || len(ns[0]) > 8000 {
		t.Fatalf("%d notices, first %d bytes", len(ns), len(ns[0]))
	}
	parsed, err := changefeed.Parse(ns[0])
	if err != nil || len(parsed) != 1 || !parsed[0].More || len(parsed[0].IDs) == 0 {
		t.Fatalf("notice of 1000 ids: %+v, %v; want one, with more and some ids", parsed, err)
	}
}

// A batch's movies share notifications, as few as the payload limit allows,
// and every movie is in exactly one.
func TestNoticesPackMoviesIntoFewNotifications(t *testing.T) {
	var ws []Written
	for i := range 600 {
		ws = append(ws, Written{ID: fmt.Sprintf("generic:r-%04d", i), MovieID: fmt.Sprintf("tt%07d", i%300)})
	}
	ws = append(ws, Written{ID: "generic:moved", MovieID: "tt9999999", PrevMovie: "tt0000001"})
	payloads := notices(ws)
	if len(payloads) < 2 || len(payloads) > 5 {
		t.Fatalf("%d notifications for 301 movies, want as few as 8000 bytes allow", len(payloads))
	}
	seen := map[string][]string{}
	for _, p := range payloads {
		if len(p) > 8000 {
			t.Fatalf("a payload of %d bytes", len(p))
		}
		ns, err := changefeed.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range ns {
			if _, dup := seen[n.MovieID]; dup {
				t.Fatalf("movie %s in two notices", n.MovieID)
			}
			seen[n.MovieID] = n.IDs
		}
	}
	if len(seen) != 301 || len(seen["tt0000007"]) != 2 || fmt.Sprint(seen["tt0000001"]) != "[generic:r-0001 generic:r-0301 generic:moved]" {
		t.Fatalf("%d movies; tt0000007 %v; tt0000001 %v", len(seen), seen["tt0000007"], seen["tt0000001"])
	}
	if notices(nil) != nil {
		t.Fatal("notifications for an empty batch")
	}
}

// BenchmarkApply compares the two write methods on batches of updates
// (every iteration writes a newer version of the same rows, as live
// traffic does) and of inserts. Run:
//
//	go test -run '^$' -bench Apply -benchtime 20x ./internal/store/
func BenchmarkApply(b *testing.B) {
	if os.Getenv("DATABASE_URL") == "" {
		b.Skip("needs DATABASE_URL")
	}
	st := testenv.New(b)
	for _, size := range []int{100, 1000, 5000} {
		for _, method := range methods {
			for _, kind := range []string{"insert", "update"} {
				b.Run(fmt.Sprintf("%s/%s/rows=%d", method.name, kind, size), func(b *testing.B) {
					s := New(st.DB, method.copyFrom)
					prefix := fmt.Sprintf("%s-%s-%d-%s-", method.name, kind, size, testenv.RandomID())
					var next int64
					b.ReportAllocs()
					for i := 0; b.Loop(); i++ {
						cs := make([]batch.Write, size)
						for j := range cs {
							ext := prefix + strconv.Itoa(j)
							v := int64(i + 1)
							if kind == "insert" {
								ext, v = prefix+strconv.Itoa(i)+"-"+strconv.Itoa(j), 1
							}
							cs[j] = upsert(ext, fmt.Sprintf("tt%07d", j%500), v, "title")
							cs[j].Offset = next + int64(j)
						}
						pos := Position{Consumer: "bench", Topic: prefix, First: next, Next: next + int64(size)}
						if _, err := s.Apply(context.Background(), pos, cs); err != nil {
							b.Fatal(err)
						}
						next = pos.Next
					}
					b.ReportMetric(float64(size)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				})
			}
		}
	}
}

// Entry order sanity: the tie rule of the guard is the dedupe package's.
func TestGuardOrderIsDedupeOrder(t *testing.T) {
	x, y := upsert("t", "tt0000001", 1, "x"), upsert("t", "tt0000001", 1, "y")
	if (x.Hash > y.Hash) != (dedupe.HashOf(x.Hash) != dedupe.HashOf(y.Hash) && x.Entry().Compare(y.Entry()) > 0) {
		t.Fatal("hex string order differs from the dedupe order")
	}
}
