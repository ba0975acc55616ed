// Package store keeps the per-movie rating statistics in PostgreSQL
// (tables of migration 0040) together with the consumed offsets of
// reviews.normalized.v1 (pkg/pgoffsets), in one transaction per
// batch: the statistics equal the topic up to the stored offset, exactly
// once, whatever is redelivered.
package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/dedupe"
	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
	"github.com/reviewpipe/reviewpipe/pkg/review"
	"github.com/reviewpipe/reviewpipe/services/analytics/internal/stats"
)

// Store reads and writes the statistics. Safe for concurrent use; batches
// of different partitions run in parallel.
type Store struct {
	db *pgxpool.Pool
	// consumer names this consumer's rows in consumer_offsets (its group id).
	consumer string
}

// New returns a store on db; consumer is the name its offsets are kept under.
func New(db *pgxpool.Pool, consumer string) *Store { return &Store{db: db, consumer: consumer} }

// NextOffset returns the offset to resume the partition at, and false when
// nothing of it was consumed yet.
func (s *Store) NextOffset(ctx context.Context, topic string, partition int) (int64, bool, error) {
	return pgoffsets.Next(ctx, s.db, s.partition(topic, partition))
}

func (s *Store) partition(topic string, partition int) pgoffsets.Partition {
	return pgoffsets.Partition{Consumer: s.consumer, Topic: topic, Partition: partition}
}

// Record is one consumed record: its offset, and its change when it
// decoded (nil for a record the consumer skips, whose offset still counts).
type Record struct {
	Offset int64
	Event  *review.Event
}

// Result says what a batch did.
type Result struct {
	// Decisions counts the changes per dedupe decision.
	Decisions map[dedupe.Decision]int
	// AlreadyApplied counts records below the stored offset (a
	// redelivery), which were skipped.
	AlreadyApplied int
	// Movies is the number of movies whose statistics changed.
	Movies int
}

// Apply applies the records of one partition, in order, and stores the
// offset after the last one, all in one transaction. Records below the
// stored offset were applied before and are skipped, so a redelivered batch
// has no second effect. On an error nothing is applied.
func (s *Store) Apply(ctx context.Context, topic string, partition int, recs []Record) (Result, error) {
	res := Result{Decisions: map[dedupe.Decision]int{}}
	if len(recs) == 0 {
		return res, nil
	}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res = Result{Decisions: map[dedupe.Decision]int{}}
		// Lock the partition's offset row (pgoffsets.Lock): a second
		// consumer holding the partition by mistake (a zombie after a
		// rebalance) waits here and then skips what this one applied.
		claim, err := pgoffsets.Lock(ctx, tx, s.partition(topic, partition), recs[0].Offset)
		if err != nil {
			return err
		}
		next := claim.Next
		var todo []Record
		for _, r := range recs {
			if r.Offset < next {
				res.AlreadyApplied++
				continue
			}
			todo = append(todo, r)
		}
		if len(todo) == 0 {
			return nil
		}

		state, err := loadReviews(ctx, tx, todo)
		if err != nil {
			return err
		}
		delta := stats.Delta{}
		changed := map[string]stats.Review{}
		for _, r := range todo {
			if r.Event == nil {
				continue
			}
			var prev *stats.Review
			if cur, ok := state[r.Event.Review.ID]; ok {
				prev = &cur
			}
			next, d := stats.Apply(prev, *r.Event, delta)
			res.Decisions[d]++
			if d.Changes() {
				state[next.ID] = next
				changed[next.ID] = next
			}
		}
		if err := saveReviews(ctx, tx, changed); err != nil {
			return err
		}
		n, err := saveMovies(ctx, tx, delta)
		if err != nil {
			return err
		}
		res.Movies = n
		return claim.Advance(ctx, todo[len(todo)-1].Offset+1)
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply %d records of %s/%d: %w", len(recs), topic, partition, err)
	}
	return res, nil
}

// loadReviews reads and locks the rows of the batch's reviews.
func loadReviews(ctx context.Context, tx pgx.Tx, recs []Record) (map[string]stats.Review, error) {
	idSet := map[string]bool{}
	for _, r := range recs {
		if r.Event != nil {
			idSet[r.Event.Review.ID] = true
		}
	}
	ids := make([]string, 0, len(idSet))
	for id := range idSet {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rows, err := tx.Query(ctx, `SELECT review_id, movie_id, version, content_hash, deleted, rating
		FROM analytics_review_ratings WHERE review_id = ANY($1) ORDER BY review_id FOR UPDATE`, ids)
	if err != nil {
		return nil, fmt.Errorf("load reviews: %w", err)
	}
	defer rows.Close()
	out := make(map[string]stats.Review, len(ids))
	for rows.Next() {
		var (
			r      stats.Review
			hash   string
			rating *int16
		)
		if err := rows.Scan(&r.ID, &r.MovieID, &r.Change.Version, &hash, &r.Change.Deleted, &rating); err != nil {
			return nil, fmt.Errorf("load reviews: %w", err)
		}
		r.Change.Hash, r.Change.Offset = dedupe.HashOf(hash), -1
		if rating != nil {
			v := int(*rating)
			r.Rating = &v
		}
		out[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load reviews: %w", err)
	}
	return out, nil
}

func saveReviews(ctx context.Context, tx pgx.Tx, changed map[string]stats.Review) error {
	if len(changed) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range changed {
		b.Queue(`INSERT INTO analytics_review_ratings (review_id, movie_id, version, content_hash, deleted, rating, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, now())
			ON CONFLICT (review_id) DO UPDATE SET movie_id = excluded.movie_id, version = excluded.version,
				content_hash = excluded.content_hash, deleted = excluded.deleted, rating = excluded.rating, updated_at = now()`,
			r.ID, r.MovieID, r.Change.Version, r.Change.HashString(), r.Change.Deleted, r.Rating)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save reviews: %w", err)
	}
	return nil
}

// saveMovies adds the batch's delta to each movie, in movie id order, so
// batches of different partitions touching the same movies lock them in
// the same order and never deadlock. It returns how many movies changed.
func saveMovies(ctx context.Context, tx pgx.Tx, delta stats.Delta) (int, error) {
	ids := make([]string, 0, len(delta))
	for id, m := range delta {
		if id != "" && !m.IsZero() {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	sort.Strings(ids)
	b := &pgx.Batch{}
	for _, id := range ids {
		m := delta[id]
		// A delta may be negative; the table's checks hold the sum, not
		// the delta, so add it with an UPDATE of an existing row.
		b.Queue(`INSERT INTO analytics_movie_ratings (movie_id) VALUES ($1) ON CONFLICT DO NOTHING`, id)
		b.Queue(`UPDATE analytics_movie_ratings SET
				reviews = reviews + $2,
				ratings = ratings + $3,
				rating_sum = rating_sum + $4,
				histogram = ARRAY(SELECT a + b FROM unnest(histogram, $5::bigint[]) WITH ORDINALITY AS h(a, b, i) ORDER BY i),
				updated_at = now()
			WHERE movie_id = $1`,
			id, m.Reviews, m.Ratings, m.Sum, m.Histogram[:])
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("save movie statistics: %w", err)
	}
	return len(ids), nil
}

// MovieStats is one movie's statistics as stored.
type MovieStats struct {
	MovieID   string
	Stats     stats.Movie
	UpdatedAt time.Time
}

// Movie returns a movie's statistics, and false when no review of it was
// ever counted.
func (s *Store) Movie(ctx context.Context, movieID string) (MovieStats, bool, error) {
	out := MovieStats{MovieID: movieID}
	var hist []int64
	err := s.db.QueryRow(ctx, `SELECT reviews, ratings, rating_sum, histogram, updated_at
		FROM analytics_movie_ratings WHERE movie_id = $1`, movieID).
		Scan(&out.Stats.Reviews, &out.Stats.Ratings, &out.Stats.Sum, &hist, &out.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, false, nil
	}
	if err != nil {
		return out, false, fmt.Errorf("read statistics of %s: %w", movieID, err)
	}
	copy(out.Stats.Histogram[:], hist)
	return out, true, nil
}
