"""The statements on durable scatter barriers: create, continue, reopen, watch and read.

:class:`BarrierStatements` is every statement the durable scatter runs; those on the
barrier's items (pages, claims, results) it inherits from
:class:`~._item_statements.ItemStatements`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._barrier_rows import BarrierRow, Checkpoint, Counts, checkpoint_of
from ._item_statements import ItemStatements
from ._rows import where_names

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from ._barrier_rows import BarrierInit
    from ._sql import Connection

__all__ = ["BarrierStatements"]


class BarrierStatements(ItemStatements):
    """The durable scatter's statements, run through a :class:`PostgresStore`.

    :param store: the store (pool, retries, error mapping)
    """

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
                    return BarrierRow.from_row(row), checkpoint_of(row), "created"
                row = await conn.fetchrow(q.barrier_by_key, init.key)
                assert row is not None
                barrier = BarrierRow.from_row(row)
                status = barrier.counts.status
                if barrier.recipe != init.recipe:
                    await conn.execute(q.delete_items, barrier.id)
                    await conn.execute(q.delete_counts, barrier.id)
                    row = await conn.fetchrow(q.reset_barrier, barrier.id, *args[5:])
                    assert row is not None
                    return BarrierRow.from_row(row), checkpoint_of(row), "restarted"
                if status in ("exceeded", "cancelled", "failed"):
                    row = await conn.fetchrow(q.reopen_barrier, barrier.id, init.attempt)
                    assert row is not None
                    if barrier.batched:
                        await conn.execute(q.rehead_batches, barrier.id)
                    return BarrierRow.from_row(row), checkpoint_of(row), "reopened"
                if barrier.attempt != init.attempt:
                    await conn.execute(q.attempt, barrier.id, init.attempt)
                return barrier, checkpoint_of(row), "continued"

        return await self.call(
            f"open the scatter barrier of {where_names(init.asset, init.partition)} in run {init.run_id!r}",
            open_,
        )

    async def create_manual(self, init: BarrierInit, *, restart: bool = False) -> BarrierRow:
        """Create a barrier driven through the barrier API, or return the stored one.

        :param restart: start a stored barrier of another recipe over (its items and
            counts deleted, its row reset), in the same transaction; one stored without a
            recipe takes this one
        """
        q = self.q
        args = init.arguments()

        async def create(conn: Connection) -> BarrierRow:
            row = await conn.fetchrow(q.insert_barrier, *args)
            if row is None and restart:
                async with conn.transaction():
                    row = await conn.fetchrow(q.barrier_by_key, init.key)
                    assert row is not None
                    barrier = BarrierRow.from_row(row)
                    if barrier.recipe == init.recipe:
                        return barrier
                    if not barrier.recipe:
                        row = await conn.fetchrow(q.adopt_recipe, barrier.id, init.recipe)
                        assert row is not None
                        return BarrierRow.from_row(row)
                    await conn.execute(q.delete_items, barrier.id)
                    await conn.execute(q.delete_counts, barrier.id)
                    row = await conn.fetchrow(q.reset_barrier, barrier.id, *args[5:])
            elif row is None:
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

    async def others_alive(self, namespace: int, worker_no: int) -> bool:
        """Whether a live worker other than ``worker_no`` takes part in the schema's
        scatters (its advisory lock held, its lease running)."""
        sql = self.q.others_alive
        return bool(
            await self.call(
                "look for other scatter workers",
                lambda conn: conn.fetchval(sql, worker_no, namespace),
            )
        )

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification (best effort; listeners also poll)."""
        await self.call(
            "notify scatter workers",
            lambda conn: conn.execute("SELECT pg_notify($1, $2)", channel, payload),
        )

    async def checkpoint(self, barrier_id: int) -> Checkpoint:
        """The barrier's enumeration checkpoint."""
        sql = self.q.barrier_by_id
        row = await self.call(
            f"read scatter barrier {barrier_id}", lambda conn: conn.fetchrow(sql, barrier_id)
        )
        assert row is not None
        return checkpoint_of(row)

    async def max_idx(self, barrier_id: int) -> int:
        """The highest item position stored in the barrier, -1 when it holds none."""
        sql = self.q.max_idx
        value = await self.call(
            f"read scatter barrier {barrier_id}", lambda conn: conn.fetchval(sql, barrier_id)
        )
        return int(value)

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
