-- Review and movie ids compare bytewise (COLLATE "C"). Every write of the
-- sink descends the btrees on these columns several times per row (reviews'
-- primary key and reviews_movie_idx, movies' primary key and
-- movies_last_changed_idx); under the database's libc collation each
-- comparison goes through strcoll, about 12 % of the sink's PostgreSQL CPU
-- per stored record (services/sink/README.md, "PostgreSQL CPU per record").
-- Ids are ASCII-like keys ("provider:external_id", IMDb ids): no reader
-- sorts them for people. Under the C.UTF-8 database collation of
-- scripts/postgres.sh (glibc 2.35 and later) the order is the same code
-- point order as before; under another collation only the order of reviews
-- tied on source_updated_at in a page of GET /v1/movies/{id}/reviews
-- changes, consistently for queries and cursors alike.
--
-- No table is rewritten, but the indexes on these columns are rebuilt
-- under an ACCESS EXCLUSIVE lock: on a large store, apply it in a quiet
-- moment.
ALTER TABLE reviews
    ALTER COLUMN id TYPE text COLLATE "C",
    ALTER COLUMN movie_id TYPE text COLLATE "C";
ALTER TABLE movies
    ALTER COLUMN movie_id TYPE text COLLATE "C";
