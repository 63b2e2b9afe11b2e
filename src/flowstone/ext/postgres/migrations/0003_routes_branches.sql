-- flowstone 0003: routers' decisions and parallel assets' branch records, per run.
-- Runs with search_path set to the target schema, inside the migration transaction.
-- partition_id is '' for an unpartitioned asset and '=' || key otherwise, as in 0001.

-- One decision per (run, router, partition): a resumed run, in any process, reuses it.
CREATE TABLE route_decisions (
    run_id         text NOT NULL,
    router         text NOT NULL,
    partition_id   text NOT NULL,
    partition_key  text,
    chosen         text,
    input_versions jsonb NOT NULL DEFAULT '{}',
    decided_at     timestamptz,
    PRIMARY KEY (run_id, router, partition_id)
);

-- One row per branch of a parallel asset in a run; seq keeps the order branches started.
CREATE TABLE parallel_branches (
    run_id        text NOT NULL,
    asset         text NOT NULL,
    partition_id  text NOT NULL,
    partition_key text,
    branch        text NOT NULL,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    final         text NOT NULL,
    status        text NOT NULL,
    required      boolean NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz,
    error         text,
    PRIMARY KEY (run_id, asset, partition_id, branch)
);
