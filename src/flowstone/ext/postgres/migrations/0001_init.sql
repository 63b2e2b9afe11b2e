-- flowstone 0001: runs, materialization records, current records and asset values.
-- Runs with search_path set to the target schema, inside the migration transaction.

CREATE TABLE runs (
    run_id        text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    pipeline      text,
    selection     text[] NOT NULL DEFAULT '{}',
    partition_key text,
    status        text NOT NULL,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    tags          jsonb NOT NULL DEFAULT '{}',
    created_by    text
);
CREATE INDEX runs_started_idx ON runs (started_at DESC, seq);

-- One row per (run, asset, partition); partition_id is '' for an unpartitioned value and
-- '=' || key otherwise (primary keys cannot hold NULL); partition_key is the readable key.
CREATE TABLE materializations (
    run_id         text NOT NULL,
    asset          text NOT NULL,
    partition_id   text NOT NULL,
    partition_key  text,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    status         text NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    started_at     timestamptz,
    ended_at       timestamptz,
    error          text,
    error_type     text,
    metadata       jsonb NOT NULL DEFAULT '{}',
    code_version   text,
    data_version   text,
    input_versions jsonb NOT NULL DEFAULT '{}',
    io_manager     text,
    reused         boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, asset, partition_id)
);
CREATE INDEX materializations_asset_idx ON materializations (asset, partition_id);

-- The current (newest succeeded, not invalidated) record of each (asset, partition): a copy
-- of the record, replaced by every succeeded save and deleted by invalidate().
CREATE TABLE latest (
    asset          text NOT NULL,
    partition_id   text NOT NULL,
    partition_key  text,
    run_id         text NOT NULL,
    status         text NOT NULL,
    attempts       integer NOT NULL DEFAULT 0,
    started_at     timestamptz,
    ended_at       timestamptz,
    error          text,
    error_type     text,
    metadata       jsonb NOT NULL DEFAULT '{}',
    code_version   text,
    data_version   text,
    input_versions jsonb NOT NULL DEFAULT '{}',
    io_manager     text,
    reused         boolean NOT NULL DEFAULT false,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, partition_id)
);

-- Values of the `postgres` IO manager. format: json | arrow | arrow_batch | bytes | pickle |
-- table (rows live in a user table; value_json describes where).
CREATE TABLE asset_values (
    asset         text NOT NULL,
    partition_id  text NOT NULL,
    partition_key text,
    format        text NOT NULL,
    value_json    jsonb,
    value_bytes   bytea,
    run_id        text,
    stored_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, partition_id)
);
