-- The poller's queued work, written when a sync request is consumed from
-- reviews.sync-requests.v1 (before its offset is committed) and served by
-- whichever poller replica holds the provider's lease.

-- Backfills: a historical pull of one provider's change feed since a time,
-- spending only the rate budget that live sync and refreshes leave.
-- `reviewctl backfill status` reads this table.
CREATE TABLE backfill_jobs (
    request_id   text        PRIMARY KEY,
    provider     text        NOT NULL,
    -- NULL: from the beginning of the provider's feed.
    since        timestamptz,
    status       text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    -- pages fetched and events published so far.
    pages        bigint      NOT NULL DEFAULT 0,
    events       bigint      NOT NULL DEFAULT 0,
    -- the provider cursor reached, saved only after Kafka acknowledged the
    -- events before it: a restarted job resumes here.
    cursor       text,
    error        text,
    requested_at timestamptz NOT NULL,
    requested_by text        NOT NULL DEFAULT '',
    started_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

CREATE INDEX backfill_jobs_pending_idx ON backfill_jobs (provider, requested_at) WHERE status IN ('queued', 'running');

-- Refreshes: the current state of one movie's reviews at one provider. A
-- request for a movie across providers is one row per provider; rows of one
-- (provider, movie) queued before a refresh starts are served by it.
CREATE TABLE refresh_jobs (
    request_id   text        NOT NULL,
    provider     text        NOT NULL,
    movie_id     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    pages        bigint      NOT NULL DEFAULT 0,
    events       bigint      NOT NULL DEFAULT 0,
    error        text,
    requested_at timestamptz NOT NULL,
    started_at   timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    PRIMARY KEY (request_id, provider)
);

CREATE INDEX refresh_jobs_pending_idx ON refresh_jobs (provider, requested_at) WHERE status IN ('queued', 'running');
CREATE INDEX refresh_jobs_movie_idx ON refresh_jobs (provider, movie_id) WHERE status IN ('queued', 'running');
