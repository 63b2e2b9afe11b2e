-- flowstone 0004: gates, the assets suspended until a signal or an approval.
-- Runs with search_path set to the target schema, inside the migration transaction.
-- partition_id is '' for an unpartitioned asset and '=' || key otherwise, as in 0001.
-- A gate keeps the SHA-256 of its token, never the token.

CREATE TABLE gates (
    gate_id       text PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    run_id        text NOT NULL,
    asset         text NOT NULL,
    partition_id  text NOT NULL,
    partition_key text,
    kind          text NOT NULL,
    status        text NOT NULL CHECK (
        status IN ('waiting', 'approved', 'rejected', 'signalled', 'expired', 'cancelled')
    ),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    resolved_at   timestamptz,
    resolved_by   text,
    reason        text,
    message       text,
    payload       jsonb,
    metadata      jsonb NOT NULL DEFAULT '{}',
    token_hash    text,
    CHECK ((status = 'waiting') = (resolved_at IS NULL))
);
-- The newest gate of an asset in a run (the one a resume takes up).
CREATE INDEX gates_asset_idx ON gates (run_id, asset, partition_id, seq DESC);
-- Open gates by deadline (list_open, and the worker's sweep for expired ones).
CREATE INDEX gates_open_idx ON gates (expires_at, created_at) WHERE status = 'waiting';
