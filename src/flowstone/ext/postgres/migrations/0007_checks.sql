-- flowstone 0007: asset check results, one row per check of a value, appended.
-- Runs with search_path set to the target schema, inside the migration transaction.
-- partition_id is '' for an unpartitioned asset and '=' || key otherwise, as in 0001.
-- check_id is made by the writer, so a retried insert does not add a second row.

CREATE TABLE check_results (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    check_id      text NOT NULL UNIQUE,
    run_id        text NOT NULL,
    asset         text NOT NULL,
    partition_id  text NOT NULL,
    partition_key text,
    check_name    text NOT NULL,
    severity      text NOT NULL CHECK (severity IN ('warn', 'error')),
    passed        boolean NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    started_at    timestamptz,
    ended_at      timestamptz,
    error         text,
    error_type    text,
    data_version  text
);
-- The history of an asset (or one partition of it), newest first.
CREATE INDEX check_results_asset_idx ON check_results (asset, partition_id, seq DESC);
-- The results of one run.
CREATE INDEX check_results_run_idx ON check_results (run_id);
