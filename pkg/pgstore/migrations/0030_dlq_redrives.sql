-- Dead letters that `reviewctl dlq redrive` sent back to their origin
-- topic, one row per dead-letter id (the id is derived from the stage, the
-- reason, the key and the failed bytes). A redrive skips the ids listed
-- here, so running it twice sends nothing twice; a record that fails again
-- the same way gets the same id and is not redriven in a loop.
CREATE TABLE dlq_redrives (
    dlq_id       text        PRIMARY KEY,
    stage        text        NOT NULL,
    reason       text        NOT NULL,
    dlq_key      text        NOT NULL DEFAULT '',
    provider     text        NOT NULL DEFAULT '',
    -- where the record went: reviews.raw.v1 or reviews.normalized.v1 (as
    -- named under the run's TOPIC_NAMESPACE)
    target_topic text        NOT NULL,
    records      integer     NOT NULL CHECK (records >= 1),
    event_ids    text[]      NOT NULL DEFAULT '{}',
    redriven_at  timestamptz NOT NULL DEFAULT now(),
    redriven_by  text        NOT NULL DEFAULT ''
);

CREATE INDEX dlq_redrives_redriven_at_idx ON dlq_redrives (redriven_at DESC);
