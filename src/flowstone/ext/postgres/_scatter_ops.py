"""The durable scatter's database operations: barriers, enumeration pages, claims, results.

:class:`ScatterOps` runs every statement on a connection of the store's pool, with the
plugin's seam helpers: transient failures retried with backoff (the store's
:class:`RetryPolicy`), driver errors mapped to flowstone errors. Each operation is
safe to run again after a lost answer: inserting a page is idempotent (``ON CONFLICT DO
NOTHING`` plus a monotonic checkpoint), completing is idempotent (only rows not yet terminal
change, and only they are counted), and a claim whose answer was lost hands its rows back
before it claims again.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from flowstone import RuntimeStateError

from ._errors import is_transient, map_errors, retrying
from ._rows import where_names
from ._scatter_sql import ITEM_SHIFT, ScatterQueries, item_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from ._sql import Connection
    from ._store import PostgresStore

__all__ = [
    "BarrierInit",
    "BarrierRow",
    "Checkpoint",
    "Claimed",
    "Counts",
    "ItemRow",
    "LocalOutcome",
    "Outcome",
    "ScatterOps",
    "SourceConflict",
    "UnitRow",
    "tolerance_columns",
]

T = TypeVar("T")

#: One item result for :meth:`ScatterOps.complete`:
#: ``(idx, "succeeded" | "failed", json_text, raw_bytes, error_text, attempts)``.
Outcome = tuple[int, str, str | None, bytes | None, str | None, int]
#: One result of an item the starting process ran without inserting it first, for
#: :meth:`ScatterOps.complete_local`: an :data:`Outcome` followed by the item's JSON text
#: and raw bytes (kept only for failed items, which a reopened barrier runs again).
LocalOutcome = tuple[int, str, str | None, bytes | None, str | None, int, str | None, bytes | None]
#: One enumerated item for :meth:`ScatterOps.insert_page`:
#: ``(idx, key or None for the default key, json_text, raw_bytes)``.
ItemRow = tuple[int, str | None, str | None, bytes | None]
#: A closed batch for :meth:`ScatterOps.insert_page`: ``(unit, member idx in order)``.
UnitRow = tuple[int, list[int]]


def tolerance_columns(tolerated: int | float) -> tuple[int | None, int, int]:
    """``(tol_count, tol_num, tol_den)`` for a ``tolerated_failure`` setting.

    A fraction is read as the decimal it is written as, like the in-process scatter does.
    """
    if isinstance(tolerated, int):
        return tolerated, 0, 1
    fraction = Fraction(repr(tolerated))
    return None, fraction.numerator, fraction.denominator


@dataclass(frozen=True, slots=True)
class Counts:
    """A barrier's live state: status, enumeration progress and counters."""

    status: str
    reason: str | None
    total: int | None
    enumerated: int
    source_done: bool
    batches: int
    succeeded: int
    failed: int
    retried: int

    @property
    def finished(self) -> int:
        """Items with a terminal result."""
        return self.succeeded + self.failed

    @property
    def complete(self) -> bool:
        """Whether the source is read and every item is terminal."""
        return self.total is not None and self.source_done and self.finished >= self.total

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Counts:
        """Read a barrier's state from a row (its succeeded count includes the workers')."""
        return cls(
            status=row["status"],
            reason=row["reason"],
            total=row["total"],
            enumerated=row["enumerated"],
            source_done=row["source_done"],
            batches=row["batches"],
            succeeded=row["succeeded"],
            failed=row["failed"],
            retried=row["retried"],
        )


@dataclass(frozen=True, slots=True)
class BarrierRow:
    """A barrier as stored: what a worker needs to join it, and its state.

    :ivar id: the internal id items refer to
    :ivar key: the barrier's unique key (for scatter assets: ``[run_id, asset, partition]``
        as JSON)
    :ivar managed: whether a coordinator drives it (workers join only those)
    :ivar partition: the asset's partition key
    :ivar run_partition: the run's partition key (inputs may be partitioned)
    :ivar recipe: code version, partition and input versions: a barrier of another recipe
        is started over
    """

    id: int
    key: str
    managed: bool
    run_id: str
    asset: str
    partition: str | None
    run_partition: str | None
    pipeline: str | None
    code_version: str | None
    recipe: str
    input_versions: Mapping[str, str]
    attempt: int
    keyed: bool
    batched: bool
    tol_count: int | None
    tol_num: int
    tol_den: int
    counts: Counts

    @property
    def tolerated(self) -> int | float:
        """The ``tolerated_failure`` setting the barrier was made with."""
        if self.tol_count is not None:
            return self.tol_count
        return self.tol_num / self.tol_den

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> BarrierRow:
        """Read a whole barrier row."""
        return cls(
            id=row["id"],
            key=row["barrier_key"],
            managed=row["managed"],
            run_id=row["run_id"],
            asset=row["asset"],
            partition=row["partition_key"],
            run_partition=row["run_partition"],
            pipeline=row["pipeline"],
            code_version=row["code_version"],
            recipe=row["recipe"],
            input_versions=json.loads(row["input_versions"] or "{}"),
            attempt=row["attempt"],
            keyed=row["keyed"],
            batched=row["batched"],
            tol_count=row["tol_count"],
            tol_num=row["tol_num"],
            tol_den=row["tol_den"],
            counts=Counts.from_row(row),
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where enumeration of a barrier stands: items inserted and the reader's cursor."""

    enumerated: int
    cursor: str | None
    source_done: bool
    batches: int


@dataclass(frozen=True, slots=True)
class BarrierInit:
    """What a coordinator knows when it opens the barrier of a scatter asset."""

    key: str
    run_id: str
    asset: str
    partition: str | None
    run_partition: str | None
    pipeline: str | None
    code_version: str | None
    recipe: str
    input_versions: Mapping[str, str]
    attempt: int
    keyed: bool
    batched: bool
    tolerated: int | float
    total: int | None = None
    managed: bool = True

    def arguments(self) -> list[Any]:
        """The values of ``insert_barrier`` from ``$1`` on."""
        count, num, den = tolerance_columns(self.tolerated)
        return [
            self.key,
            self.managed,
            self.run_id,
            self.asset,
            self.partition,
            self.run_partition,
            self.pipeline,
            self.code_version,
            self.recipe,
            json.dumps(dict(self.input_versions), sort_keys=True),
            self.attempt,
            self.keyed,
            self.batched,
            count,
            num,
            den,
            self.total,
        ]


@dataclass(slots=True)
class Claimed:
    """Items one claim handed to this worker, grouped by unit (an item, or a batch).

    :ivar units: unit number → rows ``(idx, key, item_text, item_raw)`` in source order
    """

    units: dict[int, list[tuple[int, str | None, str | None, bytes | None]]] = field(
        default_factory=dict
    )


class SourceConflict(Exception):
    """Enumeration found a key twice, or an item whose key differs from the stored one.

    :param key: the key at fault
    :param index: the source position of the offending item
    :param duplicate: a duplicate key (else: the source changed between runs)
    """

    def __init__(self, key: str, index: int, *, duplicate: bool) -> None:
        self.key = key
        self.index = index
        self.duplicate = duplicate
        super().__init__(key, index, duplicate)


class ScatterOps:
    """The durable scatter's statements, run through a :class:`PostgresStore`.

    :param store: the store (pool, retries, error mapping)
    """

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.q = ScatterQueries(store.schema)

    async def call(self, what: str, operation: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``operation`` on a pooled connection, retrying transient failures.

        Scatter statements run concurrently from many tasks, so each takes a connection of
        its own from the store's pool; a connection that failed is closed, not reused.
        """
        store = self.store
        try:
            pool = store.pool
        except RuntimeStateError:
            await store.open()
            pool = store.pool

        async def attempt() -> T:
            conn = await pool.acquire()
            try:
                return await operation(conn)
            except Exception as exc:
                if is_transient(exc):
                    # The pool opens a fresh connection for the retry. A connection the
                    # server ended may already be detached from its proxy.
                    with contextlib.suppress(Exception):
                        if not conn.is_closed():
                            conn.terminate()
                raise
            finally:
                await pool.release(conn)

        with map_errors(what):
            return await retrying(attempt, what=what, policy=store.retry_policy)

    # -- barriers ----------------------------------------------------------------------

    async def open_managed(self, init: BarrierInit) -> tuple[BarrierRow, Checkpoint, str]:
        """Create the barrier of a scatter asset, or continue the stored one.

        A stored barrier of another recipe (changed code or inputs) is started over; one
        whose failure threshold was exceeded, that was cancelled or that ended in a fatal
        error (the store refused a write, say) is reopened with its succeeded items kept
        and its failed ones pending again; an open or done one is continued as it is.

        :return: the barrier, its enumeration checkpoint, and what was done: ``"created"``,
            ``"continued"``, ``"reopened"`` or ``"restarted"``
        """
        q = self.q
        args = init.arguments()

        async def open_(conn: Connection) -> tuple[BarrierRow, Checkpoint, str]:
            async with conn.transaction():
                row = await conn.fetchrow(q.insert_barrier, *args)
                if row is not None:
                    return BarrierRow.from_row(row), _checkpoint(row), "created"
                row = await conn.fetchrow(q.barrier_by_key, init.key)
                assert row is not None
                barrier = BarrierRow.from_row(row)
                status = barrier.counts.status
                if barrier.recipe != init.recipe:
                    await conn.execute(q.delete_items, barrier.id)
                    await conn.execute(q.delete_counts, barrier.id)
                    row = await conn.fetchrow(q.reset_barrier, barrier.id, *args[5:])
                    assert row is not None
                    return BarrierRow.from_row(row), _checkpoint(row), "restarted"
                if status in ("exceeded", "cancelled", "failed"):
                    row = await conn.fetchrow(q.reopen_barrier, barrier.id, init.attempt)
                    assert row is not None
                    if barrier.batched:
                        await conn.execute(q.rehead_batches, barrier.id)
                    return BarrierRow.from_row(row), _checkpoint(row), "reopened"
                if barrier.attempt != init.attempt:
                    await conn.execute(q.attempt, barrier.id, init.attempt)
                return barrier, _checkpoint(row), "continued"

        return await self.call(
            f"open the scatter barrier of {where_names(init.asset, init.partition)} in run {init.run_id!r}",
            open_,
        )

    async def create_manual(self, init: BarrierInit) -> BarrierRow:
        """Create a barrier driven through the barrier API, or return the stored one."""
        q = self.q
        args = init.arguments()

        async def create(conn: Connection) -> BarrierRow:
            row = await conn.fetchrow(q.insert_barrier, *args)
            if row is None:
                row = await conn.fetchrow(q.barrier_by_key_shared, init.key)
            assert row is not None
            return BarrierRow.from_row(row)

        return await self.call(f"create scatter barrier {init.key!r}", create)

    async def by_key(self, key: str) -> BarrierRow | None:
        """The barrier with this key, if any."""
        sql = self.q.barrier_by_key_shared
        row = await self.call(f"read scatter barrier {key!r}", lambda conn: conn.fetchrow(sql, key))
        return None if row is None else BarrierRow.from_row(row)

    async def state(self, barrier_id: int) -> Counts:
        """The barrier's live state."""
        sql = self.q.state
        row = await self.call(
            f"read the state of scatter barrier {barrier_id}",
            lambda conn: conn.fetchrow(sql, barrier_id),
        )
        if row is None:
            return Counts("failed", "the barrier was deleted", None, 0, False, 0, 0, 0, 0)
        return Counts.from_row(row)

    async def set_status(
        self, barrier_id: int, status: str, reason: str | None, *, when: Sequence[str]
    ) -> bool:
        """Set the status when it is one of ``when``; return whether it changed."""
        sql = self.q.set_status
        row = await self.call(
            f"mark scatter barrier {barrier_id} {status}",
            lambda conn: conn.fetchrow(sql, barrier_id, status, reason, list(when)),
        )
        return row is not None

    async def drop(self, barrier_id: int) -> None:
        """Delete a barrier and its items."""
        q = self.q

        async def drop(conn: Connection) -> None:
            async with conn.transaction():
                await conn.execute(q.delete_items, barrier_id)
                await conn.execute(q.delete_counts, barrier_id)
                await conn.execute(q.delete_barrier, barrier_id)

        await self.call(f"drop scatter barrier {barrier_id}", drop)

    async def joinable(self, assets: Sequence[str]) -> list[BarrierRow]:
        """Open, managed barriers of these assets that have items waiting."""
        sql = self.q.joinable
        rows = await self.call(
            "look for open scatter barriers", lambda conn: conn.fetch(sql, list(assets))
        )
        return [BarrierRow.from_row(row) for row in rows]

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification (best effort; listeners also poll)."""
        await self.call(
            "notify scatter workers",
            lambda conn: conn.execute("SELECT pg_notify($1, $2)", channel, payload),
        )

    # -- enumeration -------------------------------------------------------------------

    async def insert_page(
        self,
        barrier_id: int,
        rows: Sequence[ItemRow],
        *,
        batched: bool,
        units: Sequence[UnitRow],
        enumerated: int,
        cursor: str | None,
        last: bool,
        batches: int,
        total: int | None,
        notify: tuple[str, str] | None,
    ) -> Counts:
        """Insert one page of items and move the checkpoint past it, in one transaction.

        See :meth:`insert_claiming` for the parameters.
        """
        counts, _ = await self.insert_claiming(
            barrier_id,
            rows,
            batched=batched,
            units=units,
            enumerated=enumerated,
            cursor=cursor,
            last=last,
            batches=batches,
            total=total,
            notify=notify,
        )
        return counts

    async def insert_claiming(
        self,
        barrier_id: int,
        rows: Sequence[ItemRow],
        *,
        batched: bool,
        units: Sequence[UnitRow],
        enumerated: int,
        cursor: str | None,
        last: bool,
        batches: int,
        total: int | None,
        notify: tuple[str, str] | None,
        claim: int = 0,
        worker_no: int = 0,
    ) -> tuple[Counts, list[int]]:
        """Insert one page of items and move the checkpoint past it, in one transaction.

        The first ``claim`` items of a page of contiguous JSON items go in already claimed
        by ``worker_no`` (running), when they were not stored before.

        :param rows: the page's items
        :param batched: the items wait for their batch (``units``) instead of being claimable
        :param units: batches closed by this page (possibly holding earlier items)
        :param enumerated: items read from the source after this page
        :param cursor: the reader's cursor after this page
        :param last: the source is exhausted (the total becomes ``enumerated``)
        :param batches: batches closed so far
        :param total: the total when known up front
        :param notify: ``(channel, payload)`` to notify when committed
        :param claim: how many of the first items go in claimed by ``worker_no``
        :param worker_no: the claiming worker
        :return: the barrier's state, and the positions of the items claimed here
        :raises SourceConflict: a duplicate key, or a stored item that differs (nothing of
            the page is written)
        """
        q = self.q
        insert_sql: str
        insert_args: list[Any]
        contiguous = all(r[0] == rows[0][0] + n for n, r in enumerate(rows))
        if contiguous and all(r[2] is not None for r in rows):
            keyed = any(r[1] is not None for r in rows)
            insert_sql = q.insert_items_json
            insert_args = [
                barrier_id,
                rows[0][0] if rows else 0,
                "[" + ",".join([r[2] for r in rows if r[2] is not None]) + "]",
                json.dumps([r[1] for r in rows]) if keyed else None,
                not batched,
                claim if not batched else 0,
                worker_no,
            ]
        else:
            claim = 0
            insert_sql = q.insert_items
            insert_args = [
                barrier_id,
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                not batched,
                [r[3] for r in rows],
            ]
        unit_idx: list[int] = []
        unit_no: list[int] = []
        unit_head: list[bool] = []
        unit_members: list[str | None] = []
        for unit, members in units:
            for position, member in enumerate(members):
                unit_idx.append(item_id(barrier_id, member))
                unit_no.append(unit)
                unit_head.append(position == 0)
                unit_members.append(
                    "{" + ",".join(map(str, members)) + "}" if position == 0 else None
                )

        tries = 0
        mine: list[int] = []

        one_statement = insert_sql is q.insert_items_json and bool(rows) and not unit_idx

        async def insert(conn: Connection) -> Counts:
            nonlocal tries, mine, one_statement
            tries += 1
            if one_statement and tries == 1:
                try:
                    found = await conn.fetchrow(
                        q.insert_page_json,
                        *insert_args,
                        enumerated,
                        cursor,
                        last,
                        batches,
                        total,
                        len(rows),
                        *(notify or (None, None)),
                    )
                except asyncpg.DivisionByZeroError:
                    one_statement = False  # some rows were there: look at them
                else:
                    assert found is not None
                    mine = list(found["mine"])
                    return Counts.from_row(found)
            async with conn.transaction():
                if rows:
                    if claim and tries > 1:
                        # The answer of an earlier try may have been lost after it committed:
                        # hand back what it claimed, and claim nothing on insert now.
                        await conn.execute(
                            q.release_page, barrier_id, rows[0][0], len(rows), worker_no
                        )
                        insert_args[5] = 0
                    found = await conn.fetchrow(insert_sql, *insert_args)
                    assert found is not None
                    if found["inserted"] != len(rows):
                        await _check_conflicts(conn, q, barrier_id, rows)
                    mine = list(found["mine"])
                if unit_idx:
                    await conn.execute(
                        q.assign_units, barrier_id, unit_idx, unit_no, unit_head, unit_members
                    )
                state = await conn.fetchrow(
                    q.checkpoint, barrier_id, enumerated, cursor, last, batches, total
                )
                if notify is not None:
                    await conn.execute("SELECT pg_notify($1, $2)", *notify)
            assert state is not None
            return Counts.from_row(state)

        counts = await self.call(f"insert items of scatter barrier {barrier_id}", insert)
        return counts, mine

    async def end_source(
        self, barrier_id: int, total: int, notify: tuple[str, str] | None = None
    ) -> Counts:
        """Record that the source is read to its end after ``total`` items, every one of
        them stored (then ``notify``)."""
        sql = self.q.checkpoint

        async def end(conn: Connection) -> asyncpg.Record | None:
            row = await conn.fetchrow(sql, barrier_id, total, None, True, 0, total)
            if notify is not None:
                await conn.execute("SELECT pg_notify($1, $2)", *notify)
            return row

        row = await self.call(f"end the source of scatter barrier {barrier_id}", end)
        assert row is not None
        return Counts.from_row(row)

    async def checkpoint(self, barrier_id: int) -> Checkpoint:
        """The barrier's enumeration checkpoint."""
        sql = self.q.barrier_by_id
        row = await self.call(
            f"read scatter barrier {barrier_id}", lambda conn: conn.fetchrow(sql, barrier_id)
        )
        assert row is not None
        return _checkpoint(row)

    async def open_batch_items(
        self, barrier_id: int
    ) -> list[tuple[int, str | None, str | None, bytes | None]]:
        """Items whose batch had not closed at the checkpoint, in source order."""
        sql = self.q.open_batch_items
        rows = await self.call(
            f"read open batches of scatter barrier {barrier_id}",
            lambda conn: conn.fetch(sql, barrier_id),
        )
        return [(r["idx"], r["key"], r["item"], r["item_raw"]) for r in rows]

    # -- claiming and completing -------------------------------------------------------

    async def claim(
        self,
        barrier_id: int,
        limit: int,
        worker_no: int,
        *,
        batched: bool,
        owned: Callable[[], Sequence[int]],
    ) -> Claimed:
        """Claim up to ``limit`` units (items, or batches) for ``worker_no``.

        :param owned: the item positions this worker holds now; after a lost answer, the
            worker's other running items of the barrier (the lost claim) are handed back
            before claiming again
        """
        q = self.q
        sql = q.claim_batches if batched else q.claim
        tries = 0

        async def claim(conn: Connection) -> list[asyncpg.Record]:
            nonlocal tries
            tries += 1
            if tries == 1:
                return await conn.fetch(sql, barrier_id, limit, worker_no)
            async with conn.transaction():
                await conn.execute(
                    q.release_unowned,
                    barrier_id,
                    worker_no,
                    [item_id(barrier_id, idx) for idx in owned()],
                )
                return await conn.fetch(sql, barrier_id, limit, worker_no)

        rows = await self.call(f"claim items of scatter barrier {barrier_id}", claim)
        claimed = Claimed()
        units = claimed.units
        for row in sorted(rows, key=_by_idx):
            units.setdefault(row["unit"], []).append(
                (row["idx"], row["key"], row["item"], row["item_raw"])
            )
        return claimed

    async def release_worker(self, barrier_id: int, worker_no: int) -> None:
        """Hand every running item of ``worker_no`` in the barrier back to the pool."""
        sql = self.q.release_worker
        await self.call(
            f"release items of scatter barrier {barrier_id}",
            lambda conn: conn.execute(sql, barrier_id, worker_no),
        )

    async def complete(
        self, barrier_id: int, outcomes: Sequence[Outcome], worker_no: int = 0
    ) -> tuple[Counts, int]:
        """Record terminal results; the first terminal result of an item wins.

        :param worker_no: the completing worker (its own row counts the successes of
            batches without failures)

        :return: the barrier's state after them, and how many rows changed
        """
        simple = all(o[1] == "succeeded" and o[2] is not None and o[5] == 1 for o in outcomes)
        args: list[Any]
        if simple:
            sql = self.q.complete_json
            base = barrier_id << ITEM_SHIFT
            args = [
                barrier_id,
                "{" + ",".join([str(base + o[0]) for o in outcomes]) + "}",
                "[" + ",".join([o[2] for o in outcomes if o[2] is not None]) + "]",
                worker_no,
            ]
        else:
            sql = self.q.complete
            columns = _columns(sorted(outcomes), 6)
            columns[0] = [item_id(barrier_id, idx) for idx in columns[0]]
            args = [barrier_id, *columns]

        async def complete(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, *args)

        row = await self.call(f"record results of scatter barrier {barrier_id}", complete)
        assert row is not None
        return Counts.from_row(row), int(row["applied"])

    async def complete_local(
        self,
        barrier_id: int,
        outcomes: Sequence[LocalOutcome],
        worker_no: int,
        *,
        enumerated: int,
        cursor: str | None,
        last: bool,
        total: int | None,
    ) -> tuple[Counts, int]:
        """Insert finished rows for items never stored before, and move the checkpoint.

        One statement: the rows (an item stored already keeps its first result and is not
        counted again), the counters, the threshold decision, and the checkpoint
        (``enumerated`` with its ``cursor``; ``last``: the source is read and every item is
        stored, so the total becomes ``enumerated``).

        :return: the barrier's state after them, and how many rows went in
        """
        head: list[Any] = [barrier_id, worker_no, enumerated, cursor, last, total]
        if all(o[1] == "succeeded" and o[2] is not None and o[5] == 1 for o in outcomes):
            sql = self.q.complete_local_json
            args = [
                *head,
                "{" + ",".join([str(o[0]) for o in outcomes]) + "}",
                "[" + ",".join([o[2] for o in outcomes if o[2] is not None]) + "]",
            ]
        else:
            sql = self.q.complete_local
            args = [*head, *_columns(outcomes, 8)]

        async def complete(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(sql, *args)

        row = await self.call(f"record results of scatter barrier {barrier_id}", complete)
        assert row is not None
        return Counts.from_row(row), int(row["applied"])

    async def max_idx(self, barrier_id: int) -> int:
        """The highest item position stored in the barrier, -1 when it holds none."""
        sql = self.q.max_idx
        value = await self.call(
            f"read scatter barrier {barrier_id}", lambda conn: conn.fetchval(sql, barrier_id)
        )
        return int(value)

    async def ensure_items(self, barrier_id: int, idx: Sequence[int], keys: Sequence[str]) -> None:
        """Insert rows for items not registered yet (barrier API)."""
        sql = self.q.ensure_items
        await self.call(
            f"register items of scatter barrier {barrier_id}",
            lambda conn: conn.execute(sql, barrier_id, list(idx), list(keys)),
        )

    async def reap(self, barrier_id: int, namespace: int, worker_no: int) -> int:
        """Put running items of dead workers back to pending; return how many.

        :param worker_no: the worker asking, alive whatever its lock says (it may be
            reconnecting after a server restart)
        """
        sql = self.q.reap
        rows = await self.call(
            f"recover items of dead workers in scatter barrier {barrier_id}",
            lambda conn: conn.fetch(sql, barrier_id, namespace, worker_no),
        )
        return len(rows)

    # -- reading -----------------------------------------------------------------------

    async def results_page(self, barrier_id: int, after: int, limit: int) -> list[asyncpg.Record]:
        """Terminal results after position ``after``, in source order."""
        sql = self.q.results_page
        return await self.call(
            f"read results of scatter barrier {barrier_id}",
            lambda conn: conn.fetch(sql, barrier_id, after, limit),
        )

    async def failures(self, barrier_id: int, limit: int) -> list[tuple[str, str]]:
        """``(key, error)`` of failed items in the order they failed (the first ``limit``)."""
        sql = self.q.failures
        rows = await self.call(
            f"read failures of scatter barrier {barrier_id}",
            lambda conn: conn.fetch(sql, barrier_id, limit),
        )
        return [(r["key"] if r["key"] is not None else str(r["idx"]), r["error"]) for r in rows]


def _by_idx(row: asyncpg.Record) -> int:
    return int(row["idx"])


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """``rows`` (of ``width`` fields) as one list per column, for an ``unnest``."""
    return [[row[at] for row in rows] for at in range(width)]


def _checkpoint(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(
        enumerated=row["enumerated"],
        cursor=row["cursor"],
        source_done=row["source_done"],
        batches=row["batches"],
    )


async def _check_conflicts(
    conn: Connection, q: ScatterQueries, barrier_id: int, rows: Sequence[ItemRow]
) -> None:
    """Tell a harmless re-insert (resume) from a duplicate key or a changed source."""
    found = await conn.fetch(
        q.conflicts,
        barrier_id,
        [item_id(barrier_id, r[0]) for r in rows],
        [r[1] for r in rows if r[1] is not None],
    )
    at_index = {r["idx"]: r["key"] for r in found}
    for index, key, _, _ in rows:
        if index in at_index:
            if at_index[index] != key:
                shown = key if key is not None else str(index)
                raise SourceConflict(shown, index, duplicate=False)
            continue
        raise SourceConflict(key if key is not None else str(index), index, duplicate=True)
