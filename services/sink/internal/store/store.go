// Package store is the sink's PostgreSQL adapter: it writes a batch of
// normalized changes and the batch's consumed offset (pkg/pgoffsets) in one
// transaction, so the store equals the log effectively once, and reads the
// offset back when a partition is assigned.
//
// A Store is safe for concurrent use; each partition's worker calls Apply
// for its own partition, one batch at a time.
package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/changefeed"
	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

// NotifyChannel is the PostgreSQL channel of the change notifications
// every committed batch sends (pkg/changefeed).
const NotifyChannel = changefeed.Channel

// Two ways bring a batch's rows to the merge statement; BenchmarkApply
// compares them (numbers in the README). UNNEST passes each column as one
// array parameter and merges from unnest(...): one round trip, no temporary
// table; it is faster up to about a thousand rows. COPY streams the rows
// into a temporary table and merges from it: two more round trips, but
// cheaper per row, so faster from a few thousand rows.

// DefaultCopyFrom is the batch size from which COPY is used.
const DefaultCopyFrom = 2500

// Position says where a batch sits in the log: records [First, Next) of one
// partition, read by one consumer group.
type Position struct {
	Consumer  string
	Topic     string
	Partition int
	First     int64
	Next      int64
}

// Written is one row that a batch actually changed.
type Written struct {
	ID         string
	MovieID    string // the row's movie after the change ("" for an orphan tombstone)
	PrevMovie  string // the row's movie before ("" when it was new or hidden)
	Deleted    bool
	AcceptedAt time.Time
	Repair     bool
}

// Result reports what Apply did.
type Result struct {
	// Replayed counts records at offsets the store had already applied
	// (a batch handed again after a crash or by a fenced-out member):
	// they were skipped.
	Replayed int
	// Superseded counts changes that lost to a greater change of the same
	// id within the batch.
	Superseded int
	// Stale counts changes that lost to the stored row (older, an exact
	// duplicate, or a same-version variant that loses the tie).
	Stale   int
	Written []Written
	// Movies lists the movies whose set of visible reviews changed.
	Movies      []string
	CommittedAt time.Time
}

// Store writes batches into PostgreSQL.
type Store struct {
	db *pgxpool.Pool
	// copyFrom is the number of rows from which a batch goes through COPY
	// (0: never).
	copyFrom int
}

// New returns a store on db that writes batches of at least copyFrom rows
// (after collapsing) with COPY and smaller ones with UNNEST; 0 means
// never COPY.
func New(db *pgxpool.Pool, copyFrom int) *Store {
	return &Store{db: db, copyFrom: copyFrom}
}

// NextOffset returns the stored next offset of a partition, and false when
// the store has none.
func (s *Store) NextOffset(ctx context.Context, consumer, topic string, partition int) (int64, bool, error) {
	return pgoffsets.Next(ctx, s.db, pgoffsets.Partition{Consumer: consumer, Topic: topic, Partition: partition})
}

// Apply writes changes (decoded records of pos, in offset order) and
// pos.Next as the partition's next offset in one transaction. Records below
// the stored offset are skipped, so a batch handed twice is applied once.
// It returns an error, and changes nothing, when the transaction fails.
func (s *Store) Apply(ctx context.Context, pos Position, changes []batch.Change) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res = Result{}
		// Lock the partition's offset row (pgoffsets.Lock): a second
		// member still writing this partition after a rebalance waits
		// here, then skips what this one applied.
		claim, err := pgoffsets.Lock(ctx, tx, pgoffsets.Partition{Consumer: pos.Consumer, Topic: pos.Topic, Partition: pos.Partition}, pos.First)
		if err != nil {
			return err
		}
		stored := claim.Next
		if stored >= pos.Next {
			res.Replayed = len(changes)
			return nil
		}
		fresh := changes
		if stored > pos.First {
			i := 0
			for i < len(fresh) && fresh[i].Offset < stored {
				i++
			}
			res.Replayed, fresh = i, fresh[i:]
		}
		winners, superseded := batch.Collapse(fresh)
		res.Superseded = superseded
		written, err := s.merge(ctx, tx, winners)
		if err != nil {
			return err
		}
		res.Written = written
		res.Stale = len(winners) - len(written)
		res.Movies = changedMovies(written)
		b := &pgx.Batch{}
		if len(res.Movies) > 0 {
			// Sorted, so concurrent partitions lock movie rows in one order.
			b.Queue(`INSERT INTO movies AS m (movie_id, last_changed_at)
				SELECT id, now() FROM unnest($1::text[]) AS id ORDER BY id
				ON CONFLICT (movie_id) DO UPDATE SET last_changed_at = GREATEST(m.last_changed_at, excluded.last_changed_at)`,
				res.Movies)
			b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, NotifyChannel, notices(written))
		}
		claim.QueueAdvance(b, pos.Next)
		b.Queue(`SELECT now()`).QueryRow(func(row pgx.Row) error { return row.Scan(&res.CommittedAt) })
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("update movies and offset: %w", err)
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply batch of %s[%d] offsets %d..%d: %w", pos.Topic, pos.Partition, pos.First, pos.Next-1, err)
	}
	return res, nil
}

// guard is the version guard of every write: the greater change in the
// processor's order wins (higher version; at equal version a delete over an
// upsert; else the greater content hash, compared bytewise).
const guard = `excluded.version > r.version
	OR (excluded.version = r.version AND excluded.deleted AND NOT r.deleted)
	OR (excluded.version = r.version AND excluded.deleted = r.deleted
	    AND excluded.content_hash COLLATE "C" > r.content_hash COLLATE "C")`

// mergeSQL merges the rows of the relation named input (a CTE over unnest
// or the COPY staging table) into reviews and returns each written row
// with its movie before the change. Every sub-statement sees the snapshot
// from before the statement, so prev holds the rows' old movie and state.
const mergeSQL = `%s
prev AS (
	SELECT r.id, r.movie_id, r.deleted FROM reviews r WHERE r.id IN (SELECT id FROM input)
),
written AS (
	INSERT INTO reviews AS r (id, provider, external_id, movie_id, author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, committed_at)
	SELECT id, provider, external_id, NULLIF(movie_id, ''), author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, now()
	FROM input
	ON CONFLICT (id) DO UPDATE SET
		provider = excluded.provider, external_id = excluded.external_id,
		movie_id = COALESCE(excluded.movie_id, r.movie_id),
		author = excluded.author, rating = excluded.rating, title = excluded.title, body = excluded.body,
		language = excluded.language, url = excluded.url, version = excluded.version, deleted = excluded.deleted,
		content_hash = excluded.content_hash, source_updated_at = excluded.source_updated_at,
		ingested_at = excluded.ingested_at, accepted_at = excluded.accepted_at, committed_at = excluded.committed_at
	WHERE ` + guard + `
	RETURNING r.id, r.movie_id, r.deleted
)
SELECT w.id, COALESCE(w.movie_id, ''), w.deleted, COALESCE(p.movie_id, ''), COALESCE(p.deleted, true)
FROM written w LEFT JOIN prev p ON p.id = w.id`

const unnestInput = `WITH input (id, provider, external_id, movie_id, author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at) AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[],
		$8::text[], $9::text[], $10::text[], $11::bigint[], $12::boolean[], $13::text[], $14::timestamptz[],
		$15::timestamptz[], $16::timestamptz[])
),`

const copyInput = `WITH input AS (SELECT * FROM sink_input),`

var stagingColumns = []string{"id", "provider", "external_id", "movie_id", "author", "rating", "title", "body",
	"language", "url", "version", "deleted", "content_hash", "source_updated_at", "ingested_at", "accepted_at"}

const createStaging = `CREATE TEMP TABLE IF NOT EXISTS sink_input (
	id text, provider text, external_id text, movie_id text, author text, rating smallint, title text, body text,
	language text, url text, version bigint, deleted boolean, content_hash text, source_updated_at timestamptz,
	ingested_at timestamptz, accepted_at timestamptz) ON COMMIT DELETE ROWS`

func (s *Store) merge(ctx context.Context, tx pgx.Tx, cs []batch.Change) ([]Written, error) {
	if len(cs) == 0 {
		return nil, nil
	}
	var (
		rows pgx.Rows
		err  error
	)
	if s.copyFrom > 0 && len(cs) >= s.copyFrom {
		if _, err := tx.Exec(ctx, createStaging); err != nil {
			return nil, fmt.Errorf("create staging table: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sink_input"}, stagingColumns, pgx.CopyFromSlice(len(cs),
			func(i int) ([]any, error) { return row(cs[i]), nil })); err != nil {
			return nil, fmt.Errorf("copy into staging table: %w", err)
		}
		rows, err = tx.Query(ctx, fmt.Sprintf(mergeSQL, copyInput))
	} else {
		rows, err = tx.Query(ctx, fmt.Sprintf(mergeSQL, unnestInput), columns(cs)...)
	}
	if err != nil {
		return nil, fmt.Errorf("merge reviews: %w", err)
	}
	byID := make(map[string]*batch.Change, len(cs))
	for i := range cs {
		byID[cs[i].Review.ID] = &cs[i]
	}
	var out []Written
	for rows.Next() {
		var w Written
		var prevDeleted bool
		if err := rows.Scan(&w.ID, &w.MovieID, &w.Deleted, &w.PrevMovie, &prevDeleted); err != nil {
			return nil, fmt.Errorf("merge reviews: %w", err)
		}
		if prevDeleted {
			w.PrevMovie = ""
		}
		if c := byID[w.ID]; c != nil {
			w.AcceptedAt, w.Repair = c.AcceptedAt, c.Repair
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("merge reviews: %w", err)
	}
	return out, nil
}

func row(c batch.Change) []any {
	r := c.Review
	var rating *int16
	if r.Rating != nil {
		v := int16(*r.Rating)
		rating = &v
	}
	var accepted *time.Time
	if !c.AcceptedAt.IsZero() {
		accepted = &c.AcceptedAt
	}
	var movie *string
	if r.MovieID != "" {
		movie = &r.MovieID
	}
	return []any{r.ID, r.Provider, r.ExternalID, movie, r.Author, rating, r.Title, r.Body, r.Language, r.URL,
		r.Version, c.Deleted, c.Hash, r.SourceUpdatedAt, r.IngestedAt, accepted}
}

func columns(cs []batch.Change) []any {
	n := len(cs)
	var (
		ids, providers, externals, movies, authors = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		titles, bodies, langs, urls, hashes        = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ratings                                    = make([]*int16, n)
		versions                                   = make([]int64, n)
		deleted                                    = make([]bool, n)
		updated, ingested                          = make([]time.Time, n), make([]time.Time, n)
		accepted                                   = make([]*time.Time, n)
	)
	for i, c := range cs {
		r := c.Review
		ids[i], providers[i], externals[i], movies[i], authors[i] = r.ID, r.Provider, r.ExternalID, r.MovieID, r.Author
		titles[i], bodies[i], langs[i], urls[i], hashes[i] = r.Title, r.Body, r.Language, r.URL, c.Hash
		if r.Rating != nil {
			v := int16(*r.Rating)
			ratings[i] = &v
		}
		versions[i], deleted[i] = r.Version, c.Deleted
		updated[i], ingested[i] = r.SourceUpdatedAt, r.IngestedAt
		if !c.AcceptedAt.IsZero() {
			accepted[i] = &cs[i].AcceptedAt
		}
	}
	return []any{ids, providers, externals, movies, authors, ratings, titles, bodies, langs, urls,
		versions, deleted, hashes, updated, ingested, accepted}
}

// changedMovies returns, sorted, the movies whose visible reviews changed:
// a row's movie after the change unless it is now a tombstone, and its
// movie before unless it was hidden (a review that moved changes both).
func changedMovies(ws []Written) []string {
	set := map[string]bool{}
	for _, w := range ws {
		if !w.Deleted && w.MovieID != "" {
			set[w.MovieID] = true
		}
		if w.PrevMovie != "" {
			set[w.PrevMovie] = true
		}
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// notices builds the notification payloads of a batch: per changed movie,
// the ids whose change its readers should see.
func notices(ws []Written) []string {
	ids := map[string][]string{}
	for _, w := range ws {
		if !w.Deleted && w.MovieID != "" {
			ids[w.MovieID] = append(ids[w.MovieID], w.ID)
		}
		if w.PrevMovie != "" && (w.PrevMovie != w.MovieID || w.Deleted) {
			ids[w.PrevMovie] = append(ids[w.PrevMovie], w.ID)
		}
	}
	movies := changedMovies(ws)
	ns := make([]changefeed.Notice, len(movies))
	for i, m := range movies {
		ns[i] = changefeed.NewNotice(m, ids[m])
	}
	return changefeed.Payloads(ns)
}
