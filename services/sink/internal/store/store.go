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
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	// step, when set (by tests that profile), is called after each round
	// trip of Apply with its name.
	step func(name string)
}

func (s *Store) stepped(name string) {
	if s.step != nil {
		s.step(name)
	}
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
func (s *Store) Apply(ctx context.Context, pos Position, changes []batch.Write) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res = Result{}
		// Lock the partition's offset row (pgoffsets.Lock): a second
		// member still writing this partition after a rebalance waits
		// here, then skips what this one applied. The read of the rows the
		// batch may change goes in the same round trip, after the lock (a
		// review's rows are written only under its partition's lock, so
		// none changes between the read and the write). It reads the rows
		// of every change handed, also those the lock shows applied
		// already: a few rows more in the rare replay, a round trip less
		// in every batch.
		b := &pgx.Batch{}
		claim := pgoffsets.QueueLock(b, tx, pgoffsets.Partition{Consumer: pos.Consumer, Topic: pos.Topic, Partition: pos.Partition}, pos.First)
		prev := queueRead(b, changes)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		s.stepped("begin+lock+read")
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
		written, err := s.write(ctx, tx, winners, prev, false)
		if err != nil {
			return err
		}
		res.Written = written
		res.Stale = len(winners) - len(written)
		res.Movies = changedMovies(written)
		b = &pgx.Batch{}
		if len(res.Movies) > 0 {
			b.Queue(moviesSQL, res.Movies)
			b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, NotifyChannel, notices(written))
		}
		claim.QueueAdvance(b, pos.Next)
		b.Queue(`SELECT now()`).QueryRow(func(row pgx.Row) error { return row.Scan(&res.CommittedAt) })
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("update movies and offset: %w", err)
		}
		s.stepped("movies+notify+offset")
		return nil
	})
	s.stepped("commit")
	if err != nil {
		return Result{}, fmt.Errorf("apply batch of %s[%d] offsets %d..%d: %w", pos.Topic, pos.Partition, pos.First, pos.Next-1, err)
	}
	return res, nil
}

// moviesSQL sets last_changed_at of the movies $1 to the transaction's
// time (never back). Sorted, so concurrent partitions lock movie rows in
// one order. (A plain UPDATE of the existing movies before an INSERT of new
// ones, to spare ON CONFLICT's second index probe and logged row lock,
// measured no cheaper: README.)
const moviesSQL = `INSERT INTO movies AS m (movie_id, last_changed_at)
	SELECT id, now() FROM unnest($1::text[]) AS id ORDER BY id
	ON CONFLICT (movie_id) DO UPDATE SET last_changed_at = GREATEST(m.last_changed_at, excluded.last_changed_at)`

// guard is the version guard of every write: the greater change in the
// processor's order wins (higher version; at equal version a delete over an
// upsert; else the greater content hash, compared bytewise). wins is the
// same rule in Go; both are applied: wins sorts a batch before the write,
// guard decides under the row lock.
const guard = `u.version > r.version
	OR (u.version = r.version AND u.deleted AND NOT r.deleted)
	OR (u.version = r.version AND u.deleted = r.deleted
	    AND u.content_hash COLLATE "C" > r.content_hash COLLATE "C")`

// stored is what the merge reads of a row before writing it.
type stored struct {
	movie   string // "" when none
	version int64
	deleted bool
	hash    string
}

// wins reports whether c is greater than the stored row s in the guard's
// order (Go compares strings bytewise, as COLLATE "C").
func wins(c *batch.Write, s stored) bool {
	v := c.Review.Version
	return v > s.version ||
		(v == s.version && c.Deleted && !s.deleted) ||
		(v == s.version && c.Deleted == s.deleted && c.Hash > s.hash)
}

// KeyedPlans are the session settings of the sink's connections
// (pgstore.OpenWith). Every statement of the write path reaches rows by
// key: reviews by id, movies by movie id, offsets by partition, the staging
// table (which has no index) row by row into those. The plans that fit are
// index lookups in nested loops, whatever the tables' sizes. Left to the
// planner, a statement's generic plan (pgx prepares each statement once per
// connection, and after five executions PostgreSQL may keep one plan for
// all) can be made while the reviews table is small, as a sequential scan
// or a hash join over all of it, and kept while the table grows, until an
// ANALYZE of the table invalidates it: in BenchmarkApplyMix at 30-record
// batches, 984 us of PostgreSQL CPU per record in one run instead of 52 to
// 69, and in make bench the PostgreSQL spikes of 130 to 210 us per review
// in about half the maximum phases (each run has a new database). The
// cost: where a whole-table plan would win (1,000-record batches over a
// 30,000-row table and 1,000 movies), about a fifth more PostgreSQL CPU per
// record; with production-sized tables the planner picks the index plans
// anyway. TestPlansStayKeyedAsTheTableGrows keeps them.
var KeyedPlans = map[string]string{"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}

// readSQL reads the rows a batch may change: their movie (to tell which
// movies a change leaves) and their place in the order (to leave the
// changes that lose to it out of the write).
const readSQL = `SELECT id, COALESCE(movie_id, ''), version, deleted, content_hash FROM reviews WHERE id = ANY($1)`

// insertSQL inserts the rows of input u (%[1]s: unnest of the parameters,
// or the COPY staging table) that had no row when read (NOT existing), with
// %[2]s: nothing, or an ON CONFLICT clause. It returns each written row's
// id, movie and deletion.
const insertSQL = `INSERT INTO reviews AS r (id, provider, external_id, movie_id, author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, committed_at)
	SELECT id, provider, external_id, NULLIF(movie_id, ''), author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, now()
	FROM %[1]s WHERE NOT existing
	%[2]s
	RETURNING r.id, COALESCE(r.movie_id, ''), r.deleted`

// updateSQL updates, under the guard, the rows of input u that won against
// their row when read (existing). A plain UPDATE neither probes the index
// twice nor logs a row lock, as ON CONFLICT DO UPDATE does; the changes that
// lost to their row (resends, stale versions) are not sent at all.
const updateSQL = `UPDATE reviews AS r SET
		provider = u.provider, external_id = u.external_id,
		movie_id = COALESCE(NULLIF(u.movie_id, ''), r.movie_id),
		author = u.author, rating = u.rating, title = u.title, body = u.body,
		language = u.language, url = u.url, version = u.version, deleted = u.deleted,
		content_hash = u.content_hash, source_updated_at = u.source_updated_at,
		ingested_at = u.ingested_at, accepted_at = u.accepted_at, committed_at = now()
	FROM %[1]s
	WHERE u.existing AND r.id = u.id AND (` + guard + `)
	RETURNING r.id, COALESCE(r.movie_id, ''), r.deleted`

// onConflict is the INSERT's clause when a row may have appeared since the
// read: the same guarded update as the UPDATE's.
var onConflict = `ON CONFLICT (id) DO UPDATE SET
		provider = excluded.provider, external_id = excluded.external_id,
		movie_id = COALESCE(excluded.movie_id, r.movie_id),
		author = excluded.author, rating = excluded.rating, title = excluded.title, body = excluded.body,
		language = excluded.language, url = excluded.url, version = excluded.version, deleted = excluded.deleted,
		content_hash = excluded.content_hash, source_updated_at = excluded.source_updated_at,
		ingested_at = excluded.ingested_at, accepted_at = excluded.accepted_at, committed_at = excluded.committed_at
	WHERE ` + strings.ReplaceAll(guard, "u.", "excluded.")

const unnestInput = `unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[],
		$8::text[], $9::text[], $10::text[], $11::bigint[], $12::boolean[], $13::text[], $14::timestamptz[],
		$15::timestamptz[], $16::timestamptz[], $17::boolean[])
	AS u (id, provider, external_id, movie_id, author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at, existing)`

const copyInput = `sink_staging AS u`

// Statements are built once: [copy] for the inputs, [onConflict] for the
// INSERT.
var (
	insertStatements = func() (m [2][2]string) {
		for i, input := range []string{unnestInput, copyInput} {
			m[i][0] = fmt.Sprintf(insertSQL, input, "")
			m[i][1] = fmt.Sprintf(insertSQL, input, onConflict)
		}
		return m
	}()
	updateStatements = [2]string{fmt.Sprintf(updateSQL, unnestInput), fmt.Sprintf(updateSQL, copyInput)}
)

var stagingColumns = []string{"id", "provider", "external_id", "movie_id", "author", "rating", "title", "body",
	"language", "url", "version", "deleted", "content_hash", "source_updated_at", "ingested_at", "accepted_at", "existing"}

const createStaging = `CREATE TEMP TABLE IF NOT EXISTS sink_staging (
	id text, provider text, external_id text, movie_id text, author text, rating smallint, title text, body text,
	language text, url text, version bigint, deleted boolean, content_hash text, source_updated_at timestamptz,
	ingested_at timestamptz, accepted_at timestamptz, existing boolean) ON COMMIT DELETE ROWS`

// queueRead queues on b the read of the stored rows of cs's ids; the
// returned map holds them once b's results are read.
func queueRead(b *pgx.Batch, cs []batch.Write) map[string]stored {
	ids := make([]string, len(cs))
	for i := range cs {
		ids[i] = cs[i].Review.ID
	}
	prev := make(map[string]stored, len(cs))
	b.Queue(readSQL, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				id string
				r  stored
			)
			if err := rows.Scan(&id, &r.movie, &r.version, &r.deleted, &r.hash); err != nil {
				return fmt.Errorf("read reviews: %w", err)
			}
			prev[id] = r
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read reviews: %w", err)
		}
		return nil
	})
	return prev
}

// toSend returns the changes that win against prev (the rows as read):
// those without a row (to insert) and those with one (to update).
func toSend(cs []batch.Write, prev map[string]stored) (ins, upd []batch.Write) {
	for i := range cs {
		p, ok := prev[cs[i].Review.ID]
		switch {
		case !ok:
			ins = append(ins, cs[i])
		case wins(&cs[i], p):
			upd = append(upd, cs[i])
		}
		// else it loses to the stored row: stale or a resend
	}
	return ins, upd
}

// write writes the changes that win against prev (the rows as read;
// missing: none) and returns the rows written.
//
// The ids that had no row are inserted with a plain INSERT: a review's
// rows are written only by the transaction holding its partition's offset
// row, which read them, so none can have appeared since. Should one have
// all the same (the topic's partitions were increased and a key now lands
// in another partition, while the old one still drains), the INSERT fails
// with a unique violation: the write is rolled back to a savepoint and
// done again with ON CONFLICT and the guard (safe = true), exactly as
// before. Likewise a change that won against its row as read but was not
// written by the UPDATE (a greater change was stored since, or the row went
// away, which nothing does) is sent again, safe: the guard decides.
func (s *Store) write(ctx context.Context, tx pgx.Tx, cs []batch.Write, prev map[string]stored, safe bool) ([]Written, error) {
	ins, upd := toSend(cs, prev)
	if len(ins)+len(upd) == 0 {
		return nil, nil
	}
	conflict := 0
	if safe {
		conflict = 1
	}
	// Not safe, the statements go after a savepoint, in their round trip.
	out, err := s.send(ctx, tx, ins, upd, prev, conflict, !safe)
	s.stepped("merge")
	var pg *pgconn.PgError
	if !safe && errors.As(err, &pg) && pg.Code == "23505" /* unique_violation */ {
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT sink_merge"); err != nil {
			return nil, fmt.Errorf("merge reviews: %w", err)
		}
		return s.write(ctx, tx, cs, prev, true)
	}
	if err != nil {
		return nil, err
	}
	byID := make(map[string]bool, len(out))
	for _, w := range out {
		byID[w.ID] = true
	}
	var again []batch.Write
	for _, c := range upd {
		if !byID[c.Review.ID] {
			again = append(again, c)
		}
	}
	if len(again) == 0 {
		return out, nil
	}
	more, err := s.write(ctx, tx, again, nil, true)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// send inserts ins and updates upd, through COPY or UNNEST, and returns the
// rows written. With savepoint, the statements follow SAVEPOINT sink_merge
// in the same round trip (COPY into the staging table goes before it: a
// second send empties that table first).
func (s *Store) send(ctx context.Context, tx pgx.Tx, ins, upd []batch.Write, prev map[string]stored, conflict int,
	savepoint bool) ([]Written, error) {
	n := len(ins) + len(upd)
	at := func(i int) (*batch.Write, bool) {
		if i < len(ins) {
			return &ins[i], false
		}
		return &upd[i-len(ins)], true
	}
	input, insArgs, updArgs := 0, []any(nil), []any(nil)
	if s.copyFrom > 0 && n >= s.copyFrom {
		if _, err := tx.Exec(ctx, createStaging); err != nil {
			return nil, fmt.Errorf("create staging table: %w", err)
		}
		if conflict == 1 {
			// A second write in the transaction: the staging table may
			// hold the first one's rows.
			if _, err := tx.Exec(ctx, "DELETE FROM sink_staging"); err != nil {
				return nil, fmt.Errorf("empty staging table: %w", err)
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sink_staging"}, stagingColumns, pgx.CopyFromSlice(n,
			func(i int) ([]any, error) { c, existing := at(i); return append(row(*c), existing), nil })); err != nil {
			return nil, fmt.Errorf("copy into staging table: %w", err)
		}
		input = 1
	} else {
		// Each statement binds only its own rows.
		insArgs = append(columns(ins), make([]bool, len(ins)))
		updArgs = append(columns(upd), slices.Repeat([]bool{true}, len(upd)))
	}
	// Two statements in one round trip: without a CTE over both, neither
	// materializes the input nor its RETURNING rows.
	b := &pgx.Batch{}
	if savepoint {
		b.Queue("SAVEPOINT sink_merge")
	}
	out := make([]Written, 0, n)
	scan := func(rows pgx.Rows) error {
		for rows.Next() {
			var w Written
			if err := rows.Scan(&w.ID, &w.MovieID, &w.Deleted); err != nil {
				return err
			}
			out = append(out, w)
		}
		return rows.Err()
	}
	if len(ins) > 0 {
		b.Queue(insertStatements[input][conflict], insArgs...).Query(scan)
	}
	if len(upd) > 0 {
		b.Queue(updateStatements[input], updArgs...).Query(scan)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("merge reviews: %w", err)
	}
	byID := make(map[string]*batch.Write, n)
	for i := range n {
		c, _ := at(i)
		byID[c.Review.ID] = c
	}
	for i := range out {
		w := &out[i]
		if p, ok := prev[w.ID]; ok && !p.deleted {
			w.PrevMovie = p.movie
		}
		if c := byID[w.ID]; c != nil {
			w.AcceptedAt, w.Repair = c.AcceptedAt, c.Repair
		}
	}
	return out, nil
}

func row(c batch.Write) []any {
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

func columns(cs []batch.Write) []any {
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
