package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reviewpipe/reviewpipe/pkg/pgoffsets"
	"github.com/reviewpipe/reviewpipe/services/sink/internal/batch"
)

// legacyStore is the sink's write path before the cheaper merge (one
// INSERT ... ON CONFLICT over every collapsed change with a CTE reading the
// rows' previous movie, then the movies upsert, the notification and the
// offset), kept verbatim as the reference that the property test compares
// the current path with and that BenchmarkApplyMix measures it against.
type legacyStore struct {
	db   *pgxpool.Pool
	step func(name string) // as Store.step
}

func (s *legacyStore) stepped(name string) {
	if s.step != nil {
		s.step(name)
	}
}

const legacyMergeSQL = `WITH input (id, provider, external_id, movie_id, author, rating, title, body, language, url,
		version, deleted, content_hash, source_updated_at, ingested_at, accepted_at) AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::text[],
		$8::text[], $9::text[], $10::text[], $11::bigint[], $12::boolean[], $13::text[], $14::timestamptz[],
		$15::timestamptz[], $16::timestamptz[])
),
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
	WHERE excluded.version > r.version
	OR (excluded.version = r.version AND excluded.deleted AND NOT r.deleted)
	OR (excluded.version = r.version AND excluded.deleted = r.deleted
	    AND excluded.content_hash COLLATE "C" > r.content_hash COLLATE "C")
	RETURNING r.id, r.movie_id, r.deleted
)
SELECT w.id, COALESCE(w.movie_id, ''), w.deleted, COALESCE(p.movie_id, ''), COALESCE(p.deleted, true)
FROM written w LEFT JOIN prev p ON p.id = w.id`

func (s *legacyStore) Apply(ctx context.Context, pos Position, changes []batch.Write) (Result, error) {
	var res Result
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		res = Result{}
		claim, err := pgoffsets.Lock(ctx, tx, pgoffsets.Partition{Consumer: pos.Consumer, Topic: pos.Topic, Partition: pos.Partition}, pos.First)
		if err != nil {
			return err
		}
		s.stepped("begin+lock")
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
		if len(winners) > 0 {
			rows, err := tx.Query(ctx, legacyMergeSQL, columns(winners)...)
			if err != nil {
				return fmt.Errorf("merge reviews: %w", err)
			}
			byID := make(map[string]*batch.Write, len(winners))
			for i := range winners {
				byID[winners[i].Review.ID] = &winners[i]
			}
			for rows.Next() {
				var w Written
				var prevDeleted bool
				if err := rows.Scan(&w.ID, &w.MovieID, &w.Deleted, &w.PrevMovie, &prevDeleted); err != nil {
					return fmt.Errorf("merge reviews: %w", err)
				}
				if prevDeleted {
					w.PrevMovie = ""
				}
				if c := byID[w.ID]; c != nil {
					w.AcceptedAt, w.Repair = c.AcceptedAt, c.Repair
				}
				res.Written = append(res.Written, w)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("merge reviews: %w", err)
			}
			s.stepped("merge")
		}
		res.Stale = len(winners) - len(res.Written)
		res.Movies = changedMovies(res.Written)
		b := &pgx.Batch{}
		if len(res.Movies) > 0 {
			b.Queue(`INSERT INTO movies AS m (movie_id, last_changed_at)
				SELECT id, now() FROM unnest($1::text[]) AS id ORDER BY id
				ON CONFLICT (movie_id) DO UPDATE SET last_changed_at = GREATEST(m.last_changed_at, excluded.last_changed_at)`,
				res.Movies)
			b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, NotifyChannel, notices(res.Written))
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
