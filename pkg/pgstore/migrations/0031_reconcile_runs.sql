-- Runs of `reviewctl reconcile --apply`: what the log snapshot was, what
-- drift was found and what the repair did, for audit. Dry runs write
-- nothing.
CREATE TABLE reconcile_runs (
    run_id       text        PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    since        timestamptz,
    providers    text[]      NOT NULL DEFAULT '{}',
    -- per partition of reviews.raw.v1: {"partition", "from", "to"}
    snapshot     jsonb       NOT NULL,
    -- drifted reviews per kind: missing, stale, extra, mismatched, ahead
    counts       jsonb       NOT NULL,
    sent         integer     NOT NULL,
    repaired     integer     NOT NULL,
    not_repaired integer     NOT NULL,
    exit_code    integer     NOT NULL,
    run_by       text        NOT NULL DEFAULT ''
);
