"""The SQL text of the durable scatter, built once per schema.

Every statement that changes item states is one statement (or one transaction), so a kill
or a lost connection leaves either all of it or none of it:

* claiming takes pending items (or batch heads) in source order with
  ``FOR UPDATE SKIP LOCKED`` and marks them ``running`` by the claiming worker;
* completing writes a batch of results with one ``UPDATE … FROM unnest(…)`` that only
  touches rows not yet terminal (the first terminal result wins), and adds exactly the rows
  it changed to the counters in the same statement. Failures go to the barrier's row, where
  the failure threshold is decided under its row lock; successes, which cannot change that
  decision, go to the completing worker's own row of ``scatter_counts``, so that workers do
  not queue behind one another on the barrier's row;
* reaping puts the running items of dead workers (advisory lock gone, or lease run out)
  back to pending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sql import qualified

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ITEM_SHIFT",
    "ScatterQueries",
    "exceeded_sql",
    "item_id",
]

#: An item's key is ``(barrier id << ITEM_SHIFT) + idx``: 2**27 barriers of 2**36 items.
ITEM_SHIFT = 36

_BARRIER_FIELDS = (
    "id",
    "barrier_key",
    "managed",
    "run_id",
    "asset",
    "partition_key",
    "run_partition",
    "pipeline",
    "code_version",
    "recipe",
    "input_versions",
    "attempt",
    "status",
    "reason",
    "keyed",
    "batched",
    "tol_count",
    "tol_num",
    "tol_den",
    "total",
    "enumerated",
    "cursor",
    "source_done",
    "batches",
    "succeeded",
    "failed",
    "retried",
)
_STATE_FIELDS = (
    "status",
    "reason",
    "total",
    "enumerated",
    "source_done",
    "batches",
    "succeeded",
    "failed",
    "retried",
)


def _columns(fields: tuple[str, ...], counts: str, more_succeeded: str = "") -> str:
    """The select list of a barrier row aliased ``b``; ``succeeded`` adds the worker rows."""
    out = []
    for field in fields:
        if field == "input_versions":
            out.append("b.input_versions::text AS input_versions")
        elif field == "succeeded":
            out.append(
                f"(b.succeeded + coalesce((SELECT sum(x.succeeded) FROM {counts} x "
                f"WHERE x.barrier_id = b.id), 0){more_succeeded})::bigint AS succeeded"
            )
        else:
            out.append(f"b.{field}")
    return ", ".join(out)


def _zipped(name: str, numbers: str, results: str) -> str:
    """Rows ``(name, result)`` from an array literal of numbers and a JSON array of results
    (one parameter each, parsed by the server), matched by position."""
    return f"""
                SELECT i.{name}, r.result
                FROM unnest({numbers}::text::bigint[]) WITH ORDINALITY AS i({name}, n)
                JOIN jsonb_array_elements({results}::text::jsonb) WITH ORDINALITY
                    AS r(result, n) USING (n)"""


def item_id(barrier_id: int, idx: int) -> int:
    """The single-column key of item ``idx`` of a barrier."""
    return (barrier_id << ITEM_SHIFT) + idx


def exceeded_sql(failed: str, total: str, b: str = "b") -> str:
    """A boolean SQL expression: do ``failed`` failures exceed barrier ``b``'s tolerance?

    Mirrors :func:`flowstone.ext.scatter.threshold_exceeded`: a count is compared as is; a
    fraction of 0 tolerates nothing; any other fraction is undecided (false) while the total
    is unknown, and otherwise allows ``floor(total * num / den)`` failures.
    """
    return (
        f"(CASE WHEN {b}.tol_count IS NOT NULL THEN {failed} > {b}.tol_count "
        f"WHEN {b}.tol_num = 0 THEN {failed} > 0 "
        f"WHEN {total} IS NULL THEN false "
        f"ELSE {failed} > floor(({total})::numeric * {b}.tol_num / {b}.tol_den) END)"
    )


class _CompletionQueries:
    """The statements that complete items: results of claimed items, and the finished
    pages the starting process ran before storing them (``$1`` is the barrier's id)."""

    def _add_completion(
        self,
        *,
        barriers: str,
        items: str,
        counts: str,
        lo: str,
        barrier_items: Callable[[], str],
    ) -> None:
        """Add the statements, on the tables and the item range of the barrier ``$1``
        that :class:`ScatterQueries` names."""
        state_columns = _columns(_STATE_FIELDS, counts)

        new_failed = "b.failed + c.f"
        self.complete = f"""
            WITH input AS (
                SELECT * FROM unnest($2::bigint[], $3::text[], $4::jsonb[], $5::bytea[],
                    $6::text[], $7::integer[])
                    AS t(item_id, status, result, result_raw, error, attempts)
            ), done AS (
                UPDATE {items} i SET status = t.status, result = t.result,
                    result_raw = t.result_raw, error = t.error, attempts = t.attempts,
                    finished_at = now()
                FROM input t
                WHERE i.item_id = t.item_id AND i.status IN ('pending', 'running')
                RETURNING t.status, t.attempts
            ), c AS (
                SELECT count(*) FILTER (WHERE status = 'succeeded') AS s,
                    count(*) FILTER (WHERE status = 'failed') AS f,
                    count(*) FILTER (WHERE attempts > 1) AS r
                FROM done
            )
            UPDATE {barriers} b SET succeeded = b.succeeded + c.s, failed = {new_failed},
                retried = b.retried + c.r,
                status = CASE WHEN b.status = 'open' AND {exceeded_sql(new_failed, "b.total")}
                    THEN 'exceeded' ELSE b.status END,
                updated_at = now()
            FROM c
            WHERE b.id = $1
            RETURNING {state_columns}, c.s + c.f AS applied"""
        # The common batch (every item succeeded at its first attempt, JSON results): ids
        # as one array literal, results as one JSON array.
        self.complete_json = f"""
            WITH input AS ({_zipped("item_id", "$2", "$3")}
            ), done AS (
                UPDATE {items} i SET status = 'succeeded', result = t.result,
                    result_raw = NULL, error = NULL, attempts = 1, finished_at = now()
                FROM input t
                WHERE i.item_id = t.item_id AND i.status IN ('pending', 'running')
                RETURNING 1
            ), c AS (
                SELECT count(*) AS s FROM done
            ), counted AS (
                INSERT INTO {counts} AS x (barrier_id, worker_no, succeeded)
                SELECT $1, $4, c.s FROM c WHERE c.s > 0
                ON CONFLICT (barrier_id, worker_no)
                    DO UPDATE SET succeeded = x.succeeded + EXCLUDED.succeeded
            )
            SELECT {_columns(_STATE_FIELDS, counts, " + c.s")}, c.s AS applied
            FROM {barriers} b, c
            WHERE b.id = $1"""
        # Results of items the starting process ran without inserting them first (see
        # ``_scatter_local``): one insert of finished rows, ``ON CONFLICT DO NOTHING`` (an
        # answer lost and the statement run again counts nothing twice), the counters, the
        # threshold decision and the enumeration checkpoint on the barrier's row, in one
        # statement. $2 is the worker, $3 the checkpoint's position, $4 its cursor, $5
        # whether the source is done, $6 the total when known; the results follow. Failed
        # items keep their item, so that reopening the barrier can run them again.
        total_local = "CASE WHEN $5 THEN $3 ELSE coalesce($6, b.total) END"

        def local_update(succeeded: str, failed: str, retried: str, guarded: bool = False) -> str:
            sources, condition = ("c, guard g", " AND NOT g.bad") if guarded else ("c", "")
            return f"""
            UPDATE {barriers} b SET succeeded = b.succeeded + {succeeded},
                failed = b.failed + {failed}, retried = b.retried + {retried},
                enumerated = greatest(b.enumerated, $3),
                cursor = CASE WHEN $3 >= b.enumerated THEN $4 ELSE b.cursor END,
                source_done = b.source_done OR $5, total = {total_local},
                status = CASE WHEN b.status = 'open'
                    AND {exceeded_sql(f"b.failed + {failed}", total_local)}
                    THEN 'exceeded' ELSE b.status END,
                updated_at = now()
            FROM {sources}
            WHERE b.id = $1{condition}"""

        local_columns = """item_id, barrier_id, idx, head, unit, status, result, result_raw,
                    error, attempts, claims, worker, finished_at, item, item_raw"""
        # The common batch: every item succeeded at its first attempt with a JSON result;
        # positions as one array literal ($7), results as one JSON array ($8).
        self.complete_local_json = f"""
            WITH input AS ({_zipped("idx", "$7", "$8")}
            ), ins AS (
                INSERT INTO {items} ({local_columns})
                SELECT {lo} + t.idx, $1, t.idx, true, t.idx, 'succeeded', t.result, NULL,
                    NULL, 1, 1, $2::bigint, now(), NULL, NULL
                FROM input t
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), c AS (
                SELECT count(*) AS s FROM ins
            ){local_update("c.s", "0", "0")}
            RETURNING {state_columns}, c.s AS applied"""

        # The same for a page the starting process ran before storing it, unless a row
        # at one of its positions ($9 to $10) has a key of its own (then nothing is
        # written and no row comes back: the caller tells a conflict in a transaction).
        self.add_finished_json = f"""
            WITH guard AS (
                SELECT EXISTS (
                    SELECT 1 FROM {items}
                    WHERE item_id BETWEEN {lo} + $9 AND {lo} + $10 AND key IS NOT NULL
                ) AS bad
            ), input AS ({_zipped("idx", "$7", "$8")}
            ), ins AS (
                INSERT INTO {items} ({local_columns})
                SELECT {lo} + t.idx, $1, t.idx, true, t.idx, 'succeeded', t.result, NULL,
                    NULL, 1, 1, $2::bigint, now(), NULL, NULL
                FROM input t, guard g WHERE NOT g.bad
                ON CONFLICT DO NOTHING
                RETURNING 1
            ), c AS (
                SELECT count(*) AS s FROM ins
            ){local_update("c.s", "0", "0", guarded=True)}
            RETURNING {state_columns}, c.s AS applied"""

        def local_insert(keys: str) -> str:
            return f"""
            WITH input AS (
                SELECT * FROM unnest($7::bigint[], $8::text[], $9::jsonb[], $10::bytea[],
                    $11::text[], $12::integer[], $13::jsonb[], $14::bytea[], {keys})
                    AS t(idx, status, result, result_raw, error, attempts, item, item_raw, key)
            ), ins AS (
                INSERT INTO {items} ({local_columns}, key)
                SELECT {lo} + t.idx, $1, t.idx, true, t.idx, t.status, t.result, t.result_raw,
                    t.error, t.attempts, 1, $2::bigint,
                    CASE WHEN t.status <> 'running' THEN now() END, t.item, t.item_raw, t.key
                FROM input t
                ON CONFLICT DO NOTHING
                RETURNING status, attempts
            ), c AS (
                SELECT count(*) FILTER (WHERE status = 'succeeded') AS s,
                    count(*) FILTER (WHERE status = 'failed') AS f,
                    count(*) FILTER (WHERE attempts > 1) AS r, count(*) AS n
                FROM ins
            ){local_update("c.s", "c.f", "c.r")}
            RETURNING {state_columns}, c.n AS applied"""

        # Any batch: columns as arrays from $7 on (position, status, result, raw result,
        # error, attempts, item, raw item); default keys. A row may go in 'running' (held
        # by worker $2, attempts 0): an item the worker runs still.
        self.complete_local = local_insert("NULL::text[]")
        # The same with each item's key ($15, NULL for the default key).
        self.complete_local_keyed = local_insert("$15::text[]")
        # The highest position stored in a barrier (-1 when none): where a resumed
        # enumeration may find items stored past its checkpoint.
        self.max_idx = f"""
            SELECT coalesce(max(item_id) - {lo}, -1) AS idx FROM {items}
            WHERE {barrier_items()}"""
        # Rows for results recorded through the barrier API without add_keys first.
        self.ensure_items = f"""
            INSERT INTO {items} (item_id, barrier_id, idx, key, unit)
            SELECT {lo} + t.idx, $1, t.idx, t.key, t.idx
            FROM unnest($2::bigint[], $3::text[]) AS t(idx, key)
            ON CONFLICT DO NOTHING"""


class ScatterQueries(_CompletionQueries):
    """The durable scatter's statements for one schema (names quoted and qualified).

    ``$1`` is the barrier's id in every statement about one barrier. Items are looked up by
    ``item_id = ANY(...)`` (a single-column unique key: always an index lookup, whatever the
    planner's statistics say) and a barrier's items by the range of its ``item_id``.
    """

    def __init__(self, schema: str) -> None:
        barriers = qualified(schema, "scatter_barriers")
        items = qualified(schema, "scatter_items")
        workers = qualified(schema, "scatter_workers")
        counts = qualified(schema, "scatter_counts")
        self.barriers = barriers
        self.items = items
        self.workers = workers
        self.counts = counts
        barrier_columns = _columns(_BARRIER_FIELDS, counts)
        state_columns = _columns(_STATE_FIELDS, counts)
        lo = f"($1::bigint << {ITEM_SHIFT})"
        hi = f"(($1::bigint + 1) << {ITEM_SHIFT})"

        def barrier_items(alias: str = "") -> str:
            return f"{alias}item_id >= {lo} AND {alias}item_id < {hi}"

        # -- barriers ------------------------------------------------------------------
        self.insert_barrier = f"""
            INSERT INTO {barriers} AS b (barrier_key, managed, run_id, asset, partition_key,
                run_partition, pipeline, code_version, recipe, input_versions, attempt,
                keyed, batched, tol_count, tol_num, tol_den, total)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15,
                $16, $17)
            ON CONFLICT (barrier_key) DO NOTHING
            RETURNING {barrier_columns}"""
        self.barrier_by_key = (
            f"SELECT {barrier_columns} FROM {barriers} b WHERE b.barrier_key = $1 FOR UPDATE"
        )
        self.barrier_by_key_shared = (
            f"SELECT {barrier_columns} FROM {barriers} b WHERE b.barrier_key = $1"
        )
        self.barrier_by_id = f"SELECT {barrier_columns} FROM {barriers} b WHERE b.id = $1"
        self.state = f"SELECT {state_columns} FROM {barriers} b WHERE b.id = $1"
        self.delete_counts = f"DELETE FROM {counts} WHERE barrier_id = $1"
        self.delete_items = f"DELETE FROM {items} WHERE {barrier_items()}"
        self.delete_barrier = f"DELETE FROM {barriers} WHERE id = $1"
        self.reset_barrier = f"""
            UPDATE {barriers} b SET run_partition = $2, pipeline = $3, code_version = $4,
                recipe = $5, input_versions = $6::jsonb, attempt = $7, keyed = $8,
                batched = $9, tol_count = $10, tol_num = $11, tol_den = $12, total = $13,
                status = 'open', reason = NULL, enumerated = 0, cursor = NULL,
                source_done = false, batches = 0, succeeded = 0, failed = 0, retried = 0,
                updated_at = now()
            WHERE b.id = $1
            RETURNING {barrier_columns}"""
        # A barrier stored without a recipe takes the one it is opened with.
        self.adopt_recipe = f"""
            UPDATE {barriers} b SET recipe = $2 WHERE b.id = $1 RETURNING {barrier_columns}"""
        # Failed items go back to pending (a retry of the asset, or a resumed run, runs
        # them again); the counters lose them in the same statement.
        self.reopen_barrier = f"""
            WITH reset AS (
                UPDATE {items} SET status = 'pending', result = NULL, result_raw = NULL,
                    error = NULL, worker = NULL, finished_at = NULL
                WHERE {barrier_items()} AND status = 'failed'
                RETURNING attempts
            ), counts AS (
                SELECT count(*) AS f, count(*) FILTER (WHERE attempts > 1) AS r FROM reset
            )
            UPDATE {barriers} b SET failed = b.failed - c.f, retried = b.retried - c.r,
                status = 'open', reason = NULL, attempt = $2, updated_at = now()
            FROM counts c
            WHERE b.id = $1
            RETURNING {barrier_columns}"""
        # After reopening a batched barrier: each batch with pending items gets its first
        # pending item as head, listing the pending members.
        self.rehead_batches = f"""
            WITH pend AS (
                SELECT unit, min(idx) AS first, array_agg(idx ORDER BY idx) AS members
                FROM {items}
                WHERE {barrier_items()} AND status = 'pending' AND unit IS NOT NULL
                GROUP BY unit
            )
            UPDATE {items} i SET head = (i.idx = p.first),
                members = CASE WHEN i.idx = p.first THEN p.members END
            FROM pend p
            WHERE {barrier_items("i.")} AND i.unit = p.unit AND i.status = 'pending'"""
        self.set_status = f"""
            UPDATE {barriers} SET status = $2, reason = $3, updated_at = now()
            WHERE id = $1 AND status = ANY($4::text[])
            RETURNING status"""
        self.attempt = f"UPDATE {barriers} SET attempt = $2 WHERE id = $1"

        # -- enumeration ---------------------------------------------------------------
        # Items go in as one JSON array (and keys as another) parsed by the server: one
        # parameter per column instead of one encoded element per item. Positions run
        # from $2. The general form below takes arrays, for items kept as raw bytes.
        # The first $6 items of the page go in already claimed by worker $7 (the starting
        # process takes them as it inserts them); the answer lists those that went in so.
        insert_json = f"""
                INSERT INTO {items} (item_id, barrier_id, idx, key, head, unit, item, status,
                    worker, claims)
                SELECT {lo} + $2 + e.n - 1, $1, $2 + e.n - 1, k.key, $5,
                    CASE WHEN $5 THEN $2 + e.n - 1 END, e.item,
                    CASE WHEN e.n <= $6 THEN 'running' ELSE 'pending' END,
                    CASE WHEN e.n <= $6 THEN $7::bigint END,
                    CASE WHEN e.n <= $6 THEN 1 ELSE 0 END
                FROM jsonb_array_elements($3::text::jsonb) WITH ORDINALITY AS e(item, n)
                LEFT JOIN jsonb_array_elements_text($4::text::jsonb) WITH ORDINALITY
                    AS k(key, n) USING (n)
                ON CONFLICT DO NOTHING
                RETURNING idx, status = 'running' AS mine"""
        self.insert_items_json = f"""
            WITH ins AS ({insert_json})
            SELECT count(*) AS inserted,
                coalesce(array_agg(idx) FILTER (WHERE mine), '{{}}') AS mine
            FROM ins"""
        # A page insert whose answer was lost hands back what it claimed before it is tried
        # again (this worker never took those items).
        self.release_page = f"""
            UPDATE {items} SET status = 'pending', worker = NULL
            WHERE item_id >= {lo} + $2 AND item_id < {lo} + $2 + $3
                AND status = 'running' AND worker = $4"""
        self.insert_items = f"""
            WITH ins AS (
                INSERT INTO {items} (item_id, barrier_id, idx, key, head, unit, item, item_raw)
                SELECT {lo} + t.idx, $1, t.idx, t.key, $5, CASE WHEN $5 THEN t.idx END,
                    t.item, t.item_raw
                FROM unnest($2::bigint[], $3::text[], $4::jsonb[], $6::bytea[])
                    AS t(idx, key, item, item_raw)
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT count(*) AS inserted, '{{}}'::bigint[] AS mine FROM ins"""
        self.conflicts = f"""
            SELECT idx, key FROM {items} WHERE item_id = ANY($2::bigint[])
            UNION
            SELECT idx, key FROM {items} WHERE barrier_id = $1 AND key = ANY($3::text[])"""
        self.assign_units = f"""
            UPDATE {items} i SET unit = t.unit, head = t.head, members = t.members::bigint[]
            FROM unnest($2::bigint[], $3::bigint[], $4::boolean[], $5::text[])
                AS t(item_id, unit, head, members)
            WHERE i.item_id = t.item_id AND i.barrier_id = $1"""
        self.open_batch_items = f"""
            SELECT idx, key, item::text AS item, item_raw FROM {items}
            WHERE {barrier_items()} AND unit IS NULL ORDER BY item_id"""
        total_now = "CASE WHEN $4 THEN $2 ELSE coalesce($6, b.total) END"
        self.checkpoint = f"""
            UPDATE {barriers} b SET enumerated = greatest(b.enumerated, $2),
                cursor = CASE WHEN $2 >= b.enumerated THEN $3 ELSE b.cursor END,
                source_done = b.source_done OR $4, batches = greatest(b.batches, $5),
                total = {total_now},
                status = CASE WHEN b.status = 'open' AND {exceeded_sql("b.failed", total_now)}
                    THEN 'exceeded' ELSE b.status END,
                updated_at = now()
            WHERE b.id = $1
            RETURNING {state_columns}"""

        # A whole page in one statement (so in one round trip, atomically): the insert
        # above, the checkpoint ($8 enumerated, $9 cursor, $10 last, $11 batches, $12 total)
        # and the notification ($14 channel, $15 payload). When fewer than $13 rows went in
        # (a resumed page, or a conflict), it fails with a division by zero and nothing of
        # it stays: the page is then written by the transaction that looks at conflicts.
        total_page = "CASE WHEN $10 THEN $8 ELSE coalesce($12, b.total) END"
        self.insert_page_json = f"""
            WITH ins AS ({insert_json}
            ), c AS (
                SELECT count(*) AS inserted,
                    coalesce(array_agg(idx) FILTER (WHERE mine), '{{}}') AS mine
                FROM ins
            ), cp AS (
                UPDATE {barriers} b SET enumerated = greatest(b.enumerated, $8),
                    cursor = CASE WHEN $8 >= b.enumerated THEN $9 ELSE b.cursor END,
                    source_done = b.source_done OR $10, batches = greatest(b.batches, $11),
                    total = {total_page},
                    status = CASE WHEN b.status = 'open'
                        AND {exceeded_sql("b.failed", total_page)}
                        THEN 'exceeded' ELSE b.status END,
                    updated_at = now()
                WHERE b.id = $1
                RETURNING {state_columns}
            )
            SELECT cp.*, c.mine,
                c.inserted / (CASE WHEN c.inserted = $13 THEN 1 ELSE 0 END) AS inserted,
                CASE WHEN $14::text IS NOT NULL THEN pg_notify($14, $15) END AS notified
            FROM cp, c"""

        # -- claiming ------------------------------------------------------------------
        # Only from an open barrier, and only for a worker whose lease has not run out (a
        # fenced-off worker claims nothing until it renewed its lease).
        open_only = (
            f"EXISTS (SELECT 1 FROM {barriers} WHERE id = $1 AND status = 'open') AND EXISTS "
            f"(SELECT 1 FROM {workers} WHERE worker_no = $3 AND lease_until > now())"
        )
        self.claim = f"""
            WITH picked AS (
                SELECT item_id FROM {items}
                WHERE {barrier_items()} AND status = 'pending' AND head AND {open_only}
                ORDER BY item_id LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {items} i SET status = 'running', worker = $3, claims = i.claims + 1
            WHERE i.item_id = ANY(ARRAY(SELECT item_id FROM picked))
            RETURNING i.idx, i.idx AS unit, i.key, i.item::text AS item, i.item_raw"""
        self.claim_batches = f"""
            WITH picked AS (
                SELECT idx, members FROM {items}
                WHERE {barrier_items()} AND status = 'pending' AND head AND {open_only}
                ORDER BY item_id LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {items} i SET status = 'running', worker = $3, claims = i.claims + 1
            WHERE i.item_id = ANY(ARRAY(
                    SELECT {lo} + unnest(coalesce(p.members, ARRAY[p.idx])) FROM picked p))
                AND i.status = 'pending'
            RETURNING i.idx, i.unit, i.key, i.item::text AS item, i.item_raw"""
        # Everything a worker still holds, in any barrier (a kept session taken up again).
        self.release_held = f"""
            UPDATE {items} SET status = 'pending', worker = NULL
            WHERE status = 'running' AND worker = $1"""
        self.release_worker = f"""
            UPDATE {items} SET status = 'pending', worker = NULL
            WHERE barrier_id = $1 AND status = 'running' AND worker = $2"""
        # A claim whose answer was lost gives its rows back before it is tried again.
        self.release_unowned = self.release_worker + " AND NOT (item_id = ANY($3::bigint[]))"

        # -- completing (see _CompletionQueries) -----------------------------------------
        self._add_completion(
            barriers=barriers, items=items, counts=counts, lo=lo, barrier_items=barrier_items
        )

        # -- dead workers --------------------------------------------------------------
        live = f"""
            SELECT w.worker_no FROM {workers} w
            WHERE w.lease_until > now() AND EXISTS (
                SELECT 1 FROM pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                    AND l.database = (SELECT oid FROM pg_database
                                      WHERE datname = current_database())
                    AND l.classid::bigint = $2 AND l.objid::bigint = w.worker_no)"""
        # Whether a live worker other than $1 (namespace $2) could take pending items.
        self.others_alive = f"SELECT EXISTS ({live} AND w.worker_no <> $1) AS alive"
        self.reap = f"""
            UPDATE {items} SET status = 'pending', worker = NULL
            WHERE barrier_id = $1 AND status = 'running' AND worker IS DISTINCT FROM $3
                AND (worker IS NULL OR worker NOT IN ({live}))
            RETURNING idx"""

        # -- reading -------------------------------------------------------------------
        self.results_page = f"""
            SELECT idx, key, status, result::text AS result, result_raw, error, attempts
            FROM {items}
            WHERE item_id > {lo} + $2 AND item_id < {hi}
                AND status IN ('succeeded', 'failed')
            ORDER BY item_id LIMIT $3"""
        self.failures = f"""
            SELECT idx, key, error FROM {items}
            WHERE {barrier_items()} AND status = 'failed'
            ORDER BY finished_at, item_id LIMIT $2"""
        self.joinable = f"""
            SELECT {barrier_columns} FROM {barriers} b
            WHERE b.status = 'open' AND b.managed AND b.asset = ANY($1::text[])
                AND EXISTS (SELECT 1 FROM {items} i
                            WHERE i.item_id >= (b.id << {ITEM_SHIFT})
                                AND i.item_id < ((b.id + 1) << {ITEM_SHIFT})
                                AND i.status = 'pending' AND i.head)
            ORDER BY b.id"""

        # -- workers -------------------------------------------------------------------
        self.register_worker = f"""
            INSERT INTO {workers} (host, pid, lease_until)
            VALUES ($1, $2, now() + make_interval(secs => $3))
            RETURNING worker_no"""
        self.heartbeat = f"""
            UPDATE {workers} SET lease_until = now() + make_interval(secs => $2)
            WHERE worker_no = $1"""
        # A lease renewed only while it has not run out (BarrierStore.renew).
        self.renew_lease = self.heartbeat + " AND lease_until > now()"
        # A worker kept idle for the next scatter: no longer alive to the others.
        self.pause_worker = f"UPDATE {workers} SET lease_until = now() WHERE worker_no = $1"
        self.forget_worker = f"DELETE FROM {workers} WHERE worker_no = $1"
        self.forget_old_workers = (
            f"DELETE FROM {workers} WHERE lease_until < now() - interval '1 day'"
        )
