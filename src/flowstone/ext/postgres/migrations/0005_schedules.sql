-- flowstone 0005: schedules and sensors (flowstone.ext.schedule).
-- Runs with search_path set to the target schema, inside the migration transaction.
-- A tick is one row per (name, key): a schedule's key is its instant in UTC, a sensor's
-- the run key of a request. Inserting the row is the claim, so of any number of
-- processes one fires it; a claim's lease (lease_until, on the schedulers' clock) lets
-- another process take it over when its holder died.

CREATE TABLE schedule_names (
    name          text PRIMARY KEY,
    registered_at timestamptz NOT NULL,
    cursor        text
);

CREATE TABLE schedule_ticks (
    name         text NOT NULL,
    key          text NOT NULL,
    tick         timestamptz NOT NULL,
    run_id       text NOT NULL,
    status       text NOT NULL CHECK (
        status IN ('claimed', 'succeeded', 'failed', 'cancelled', 'waiting', 'skipped')
    ),
    selection    text[] NOT NULL DEFAULT '{}',
    partition_key text,
    tags         jsonb NOT NULL DEFAULT '{}',
    reason       text,
    owner        text,
    lease_until  timestamptz,
    finished_at  timestamptz,
    PRIMARY KEY (name, key)
);
-- The newest ticks of a schedule first (history, status, where catch-up starts).
CREATE INDEX schedule_ticks_tick_idx ON schedule_ticks (name, tick DESC);
-- The claims in flight, by the end of their lease (overlap checks and take-overs).
CREATE INDEX schedule_ticks_claimed_idx ON schedule_ticks (name, lease_until)
    WHERE status = 'claimed';
