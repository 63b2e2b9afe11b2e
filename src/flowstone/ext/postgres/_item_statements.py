"""The statements on a durable barrier's items: enumeration pages, claims, results.

Every statement runs on a connection of its own from the store's pool (scatter statements
run concurrently from many tasks), retried with backoff after transient failures (the store's
:class:`RetryPolicy`), with driver errors mapped to flowstone errors. Each is safe to run
again after a lost answer: inserting a page is idempotent (``ON CONFLICT DO NOTHING`` plus a
monotonic checkpoint), completing is idempotent (only rows not yet terminal change, and only
they are counted), and a claim whose answer was lost hands its rows back before it claims
again.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from flowstone import RuntimeStateError

from ._barrier_rows import Claimed, Counts, SourceConflict
from ._errors import is_transient, map_errors, retrying
from ._scatter_sql import ITEM_SHIFT, ScatterQueries, item_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._barrier_rows import ItemRow, LocalOutcome, Outcome, UnitRow
    from ._sql import Connection
    from ._store import PostgresStore

__all__ = ["ItemStatements", "StatementRunner"]

T = TypeVar("T")


class StatementRunner:
    """Runs the durable scatter's statements through a :class:`PostgresStore`.

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


class ItemStatements(StatementRunner):
    """The statements on a barrier's items (see the module documentation)."""

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

    async def add_finished(
        self,
        barrier_id: int,
        outcomes: Sequence[LocalOutcome],
        keys: Sequence[str | None],
        worker_no: int,
        *,
        enumerated: int,
        cursor: str | None,
        last: bool,
    ) -> Counts:
        """Insert finished rows with their keys and move the checkpoint, in one transaction.

        Like :meth:`complete_local`, with keys (``None``: the default key); a row that is
        stored already must be the same item (a resumed page).

        :raises SourceConflict: a duplicate key, or a stored item that differs (nothing of
            the page is written)
        """
        q = self.q
        head: list[Any] = [barrier_id, worker_no, enumerated, cursor, last, None]
        if (
            outcomes
            and all(k is None for k in keys)
            and all(o[1] == "succeeded" and o[2] is not None and o[5] == 1 for o in outcomes)
        ):
            # The common page: default keys, every item succeeded at its first attempt
            # with a JSON result: one statement, two text parameters the server parses.
            fast = [
                *head,
                "{" + ",".join([str(o[0]) for o in outcomes]) + "}",
                "[" + ",".join([o[2] for o in outcomes if o[2] is not None]) + "]",
                min(o[0] for o in outcomes),
                max(o[0] for o in outcomes),
            ]
            found = await self.call(
                f"add finished items of scatter barrier {barrier_id}",
                lambda conn: conn.fetchrow(q.add_finished_json, *fast),
            )
            if found is not None:
                return Counts.from_row(found)
            # A keyed row is stored at one of the positions: tell why, in a transaction.
        args = [*head, *_columns(outcomes, 8), list(keys)]
        rows: list[ItemRow] = [(o[0], k, None, None) for o, k in zip(outcomes, keys, strict=True)]

        async def add(conn: Connection) -> asyncpg.Record | None:
            async with conn.transaction():
                found = await conn.fetchrow(q.complete_local_keyed, *args)
                assert found is not None
                if int(found["applied"]) != len(rows):
                    await _check_conflicts(conn, q, barrier_id, rows)
                return found

        row = await self.call(f"add finished items of scatter barrier {barrier_id}", add)
        assert row is not None
        return Counts.from_row(row)

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


def _by_idx(row: asyncpg.Record) -> int:
    return int(row["idx"])


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """``rows`` (of ``width`` fields) as one list per column, for an ``unnest``."""
    return [[row[at] for row in rows] for at in range(width)]


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
