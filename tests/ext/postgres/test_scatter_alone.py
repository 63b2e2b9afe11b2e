"""The durable scatter's starting process when it is alone: per-item events only for sinks
that take them, and pages that wait for its room instead of going in pending for no one."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.postgres._barrier_statements import BarrierStatements
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator
from flowstone.ext.postgres._scatter_session import WorkerSession
from flowstone.ext.postgres._scatter_sql import ScatterQueries
from flowstone.ext.scatter import ScatterItemFinished, scatter

pytestmark = pytest.mark.postgres

ITEMS = 120


def durable_runtime(coordinator: PostgresScatterCoordinator, **options: Any) -> fs.Runtime:
    runtime = fs.Runtime(**options)
    runtime.coordinators.register("scatter", coordinator)
    return runtime


@fs.asset
@scatter(items=lambda deps: range(ITEMS), max_concurrent=4)
async def slow(item: int) -> int:
    # 120 items, 4 at a time, 5 ms each: room frees far more slowly than a page's first
    # wait for it (50 ms), however fast the machine.
    await anyio.sleep(0.005)
    return item + 1


def logging_store(dsn: str, schema: str, queries: list[str]) -> PostgresStore:
    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: queries.append(record.query))

    return PostgresStore(dsn, schema=schema, connect_options={"init": log_queries})


def pending_inserts(queries: list[str], schema: str) -> int:
    """Statements that inserted items pending (to be claimed), not finished."""
    q = ScatterQueries(schema)
    pending = {q.insert_items_json, q.insert_page_json, q.insert_items}
    return sum(query in pending for query in queries)


async def test_only_the_event_relay_takes_no_item_events(pg_store: PostgresStore) -> None:
    async with fs.Runtime(store=pg_store) as runtime:
        assert runtime.has_sinks  # the store's relay
        assert not runtime.has_item_sinks
        async with runtime.subscribe():
            assert runtime.has_item_sinks
        assert not runtime.has_item_sinks
    async with fs.Runtime(store=pg_store, event_sinks=[fs.MemoryEventSink()]) as runtime:
        assert runtime.has_item_sinks


async def test_a_subscriber_still_sees_every_item_of_a_durable_scatter(
    pg_store: PostgresStore,
) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(5), max_concurrent=2)
    async def doubled(item: int) -> int:
        return item * 2

    seen: list[ScatterItemFinished] = []
    coordinator = PostgresScatterCoordinator(pg_store, lease=2)
    async with durable_runtime(coordinator, store=pg_store) as runtime:
        async with runtime.subscribe(kinds=ScatterItemFinished) as events:
            result = await runtime.materialize([doubled])
            with anyio.fail_after(10):
                async for event in events:
                    assert isinstance(event, ScatterItemFinished)
                    seen.append(event)
                    if len(seen) == 5:
                        break
    assert result["doubled"] == [0, 2, 4, 6, 8]
    assert sorted(e.index for e in seen) == [0, 1, 2, 3, 4]


async def test_a_session_sees_other_live_workers_only(pg_store: PostgresStore) -> None:
    ops = BarrierStatements(pg_store)
    mine = WorkerSession(ops, lease=5)
    await mine.start()
    try:
        assert not await mine.others_alive()
        other = WorkerSession(ops, lease=5)
        await other.start()
        try:
            assert await mine.others_alive()
            assert await other.others_alive()
        finally:
            await other.close()
        assert not await mine.others_alive()
    finally:
        await mine.close()


async def test_alone_the_starting_process_stores_nothing_pending(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    queries: list[str] = []
    store = logging_store(pg_dsn, pg_schema, queries)
    async with durable_runtime(PostgresScatterCoordinator(store, lease=2), store=store) as rt:
        result = await rt.materialize([slow])
    assert result["slow"] == [i + 1 for i in range(ITEMS)]
    assert pending_inserts(queries, pg_schema) == 0
    rows = await pg_conn.fetch(
        f'SELECT status, item IS NULL AS no_item, claims FROM "{pg_schema}".scatter_items'
    )
    assert len(rows) == ITEMS
    # Every row went in finished, by the process that ran its item: none was claimed.
    assert all(r["status"] == "succeeded" and r["no_item"] and r["claims"] == 1 for r in rows)


async def test_with_another_live_worker_a_page_goes_in_pending_for_it(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    queries: list[str] = []
    store = logging_store(pg_dsn, pg_schema, queries)
    coordinator = PostgresScatterCoordinator(store, lease=2)
    async with durable_runtime(coordinator, store=store) as rt:
        await store.migrate()
        # A worker that is alive but takes nothing: the starting process claims back
        # what it leaves pending.
        other = WorkerSession(BarrierStatements(store), lease=5)
        await other.start()
        try:
            result = await rt.materialize([slow])
        finally:
            await other.close()
    assert result["slow"] == [i + 1 for i in range(ITEMS)]
    assert pending_inserts(queries, pg_schema) >= 1
    pending_rows = await pg_conn.fetchval(
        f'SELECT count(*) FROM "{pg_schema}".scatter_items WHERE item IS NOT NULL'
    )
    assert pending_rows > 0
    statuses = await pg_conn.fetch(f'SELECT DISTINCT status FROM "{pg_schema}".scatter_items')
    assert [r["status"] for r in statuses] == ["succeeded"]
