-- flowstone 0002: durable scatter barriers, their items, and the workers that claim them.
-- Runs with search_path set to the target schema, inside the migration transaction.

-- One barrier per (run, scatter asset, partition): what a worker needs to join it, the
-- enumeration checkpoint, and the counters with the tolerated-failure decision.
-- status: open | done | exceeded | cancelled | failed (a fatal error; reset on re-execution).
-- Tolerated failures: tol_count (a count) or tol_num/tol_den (a fraction of the total).
CREATE TABLE scatter_barriers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    barrier_key    text NOT NULL UNIQUE,
    managed        boolean NOT NULL DEFAULT true,
    run_id         text NOT NULL,
    asset          text NOT NULL,
    partition_key  text,
    run_partition  text,
    pipeline       text,
    code_version   text,
    recipe         text NOT NULL DEFAULT '',
    input_versions jsonb NOT NULL DEFAULT '{}',
    attempt        integer NOT NULL DEFAULT 1,
    status         text NOT NULL DEFAULT 'open',
    reason         text,
    keyed          boolean NOT NULL DEFAULT false,
    batched        boolean NOT NULL DEFAULT false,
    tol_count      bigint,
    tol_num        bigint NOT NULL DEFAULT 0,
    tol_den        bigint NOT NULL DEFAULT 1,
    total          bigint,
    enumerated     bigint NOT NULL DEFAULT 0,
    cursor         text,
    source_done    boolean NOT NULL DEFAULT false,
    batches        bigint NOT NULL DEFAULT 0,
    succeeded      bigint NOT NULL DEFAULT 0,
    failed         bigint NOT NULL DEFAULT 0,
    retried        bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scatter_barriers_open_idx ON scatter_barriers (asset) WHERE status = 'open';

-- One row per item. item_id is (barrier id << 36) + idx, the item's source position: a
-- single-column key, so that looking items up by key never depends on statistics about a
-- barrier that is still filling up. key is NULL for the default key (the position).
-- status: pending | running | succeeded | failed. A batch's items share a unit (NULL while
-- the batch is still open); its first pending item is the head and lists the members, and
-- workers claim heads. worker is the claimer's worker_no. item/result hold JSON as jsonb;
-- *_raw hold what jsonb cannot: b'J' + exact JSON text, or b'P' + a pickle (opt-in).
CREATE TABLE scatter_items (
    item_id     bigint PRIMARY KEY,
    barrier_id  bigint NOT NULL,
    idx         bigint NOT NULL,
    key         text,
    status      text NOT NULL DEFAULT 'pending',
    head        boolean NOT NULL DEFAULT true,
    unit        bigint,
    members     bigint[],
    item        jsonb,
    item_raw    bytea,
    result      jsonb,
    result_raw  bytea,
    error       text,
    attempts    integer NOT NULL DEFAULT 0,
    claims      integer NOT NULL DEFAULT 0,
    worker      bigint,
    finished_at timestamptz
) WITH (fillfactor = 80);
CREATE UNIQUE INDEX scatter_items_key_idx ON scatter_items (barrier_id, key) WHERE key IS NOT NULL;
CREATE INDEX scatter_items_pending_idx ON scatter_items (item_id) WHERE status = 'pending' AND head;
CREATE INDEX scatter_items_running_idx ON scatter_items (barrier_id, worker)
    WHERE status = 'running';

-- Items that succeeded, counted per barrier and completing worker (a barrier's total adds
-- its own succeeded column): completions that hold no failure, and so cannot change the
-- threshold decision, do not all queue on the barrier's row.
CREATE TABLE scatter_counts (
    barrier_id bigint NOT NULL,
    worker_no  bigint NOT NULL,
    succeeded  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (barrier_id, worker_no)
);

-- Processes taking part in scatters. Each holds a session advisory lock keyed by its
-- worker_no while alive and renews lease_until; a worker whose lock is free or whose lease
-- ran out is dead, and its running items go back to pending.
CREATE TABLE scatter_workers (
    worker_no   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host        text,
    pid         integer,
    started_at  timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);
