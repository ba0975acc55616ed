-- services/analytics, the reference consumer of reviews.normalized.v1:
-- per-movie rating statistics, correct under updates, deletes, duplicates
-- and redelivery. Its consumed offsets live in consumer_offsets (consumer =
-- its group id), written in the same transaction as these rows.

-- What each review last contributed: the change applied last (version,
-- content hash, deleted: the processor's dedupe order decides what replaces
-- it) and its movie and rating, so an update takes its old contribution out
-- before adding the new one and a delete takes it out. Deleted reviews stay
-- as tombstones so an older upsert cannot count again.
CREATE TABLE analytics_review_ratings (
    review_id    text        PRIMARY KEY,
    movie_id     text        NOT NULL DEFAULT '',
    version      bigint      NOT NULL CHECK (version >= 1),
    content_hash text        NOT NULL,
    deleted      boolean     NOT NULL DEFAULT false,
    rating       smallint    CHECK (rating BETWEEN 0 AND 100),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX analytics_review_ratings_movie_idx ON analytics_review_ratings (movie_id) WHERE NOT deleted;

-- Per movie: live reviews, rated reviews, the sum of their ratings (0 to
-- 100), the mean, and a histogram of ten buckets: [0,10), [10,20), ...,
-- [80,90), [90,100].
CREATE TABLE analytics_movie_ratings (
    movie_id    text        PRIMARY KEY,
    reviews     bigint      NOT NULL DEFAULT 0 CHECK (reviews >= 0),
    ratings     bigint      NOT NULL DEFAULT 0 CHECK (ratings >= 0 AND ratings <= reviews),
    rating_sum  bigint      NOT NULL DEFAULT 0 CHECK (rating_sum >= 0),
    histogram   bigint[]    NOT NULL DEFAULT '{0,0,0,0,0,0,0,0,0,0}'
                            CHECK (cardinality(histogram) = 10 AND 0 <= ALL (histogram)),
    mean_rating double precision GENERATED ALWAYS AS
                    (CASE WHEN ratings > 0 THEN rating_sum::double precision / ratings END) STORED,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
