-- The serving store. One row per canonical review id; deletes stay as
-- tombstones (deleted = true) that keep their version, so an older upsert
-- can never bring a deleted review back.
CREATE TABLE reviews (
    id                text        PRIMARY KEY,
    provider          text        NOT NULL,
    external_id       text        NOT NULL,
    movie_id          text,
    author            text        NOT NULL DEFAULT '',
    rating            smallint    CHECK (rating BETWEEN 0 AND 100),
    title             text        NOT NULL DEFAULT '',
    body              text        NOT NULL DEFAULT '',
    language          text        NOT NULL DEFAULT '',
    url               text        NOT NULL DEFAULT '',
    version           bigint      NOT NULL CHECK (version >= 1),
    deleted           boolean     NOT NULL DEFAULT false,
    content_hash      text        NOT NULL DEFAULT '',
    source_updated_at timestamptz NOT NULL,
    ingested_at       timestamptz NOT NULL,
    -- when the pipeline first accepted the change (webhook answered, page
    -- polled): the start of end-to-end freshness.
    accepted_at       timestamptz,
    committed_at      timestamptz NOT NULL DEFAULT now()
);

-- The read API's main query: a movie's live reviews, newest first.
CREATE INDEX reviews_movie_idx ON reviews (movie_id, source_updated_at DESC, id DESC) WHERE NOT deleted;

-- Per movie, when its set of reviews last changed (the API's last_updated).
CREATE TABLE movies (
    movie_id        text        PRIMARY KEY,
    last_changed_at timestamptz NOT NULL
);

-- The sink's consumed offsets, written in the same transaction as the rows
-- they produced: the store equals the log, effectively once.
CREATE TABLE consumer_offsets (
    consumer    text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);

-- Per-provider sync health, written by the poller, read by the API.
CREATE TABLE provider_health (
    provider        text        PRIMARY KEY,
    status          text        NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'degraded', 'down')),
    last_success_at timestamptz,
    last_attempt_at timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    breaker_state   text        NOT NULL DEFAULT 'closed',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The poller's incremental cursors, saved only after Kafka acknowledged the
-- page they lead past.
CREATE TABLE poll_cursors (
    provider   text        NOT NULL,
    stream     text        NOT NULL,
    cursor     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, stream)
);

-- One poller replica at a time per provider.
CREATE TABLE poller_leases (
    provider   text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Refresh requests, so repeats for one movie within a window collapse
-- across API replicas.
CREATE TABLE refresh_requests (
    movie_id     text        PRIMARY KEY,
    request_id   text        NOT NULL,
    requested_at timestamptz NOT NULL
);
