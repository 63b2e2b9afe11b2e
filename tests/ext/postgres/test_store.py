"""``PostgresStore`` itself: options, pool ownership, lifecycle, deferred writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.protocols import IOContext
from plugin_imports import import_error_without

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 1, 2, tzinfo=UTC)


def record(asset: str, status: fs.Status, run_id: str = "r1") -> fs.MaterializationRecord:
    return fs.MaterializationRecord(
        run_id=run_id, asset=asset, partition=None, status=status, started_at=T0
    )


async def committed(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch(f'SELECT asset, status FROM "{schema}".materializations')
    return {r["asset"]: r["status"] for r in rows}


def test_options_are_checked() -> None:
    with pytest.raises(fs.ConfigurationError, match="dsn or a pool"):
        PostgresStore()
    with pytest.raises(fs.ConfigurationError, match="schema name"):
        PostgresStore("postgresql://x/y", schema='bad"name')
    with pytest.raises(fs.ConfigurationError, match="pool size"):
        PostgresStore("postgresql://x/y", min_size=5, max_size=2)
    with pytest.raises(fs.ConfigurationError, match="flush_interval"):
        PostgresStore("postgresql://x/y", flush_interval=-1)


async def test_lazy_open_close_and_reopen(pg_dsn: str, pg_schema: str) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    with pytest.raises(fs.RuntimeStateError, match="not open"):
        _ = store.pool
    assert await store.get_run("x") is None  # opens on first use
    assert not store.pool.is_closing()
    await store.aclose()
    with pytest.raises(fs.RuntimeStateError):
        _ = store.pool
    async with store as same:  # opens again
        assert same is store
        async with store:  # nested use keeps it open
            pass
        assert await store.list_runs() == []
    with pytest.raises(fs.RuntimeStateError):
        _ = store.pool
    assert store.table("runs") == f'"{pg_schema}"."runs"'


async def test_concurrent_first_use_opens_one_pool(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    application = f"fs-open-{pg_schema}"
    store = PostgresStore(
        pg_dsn,
        schema=pg_schema,
        min_size=3,
        max_size=4,
        connect_options={"server_settings": {"application_name": application}},
    )
    try:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(store.get_run, f"r{i}")
        connections = await pg_conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application
        )
        assert connections <= 4
    finally:
        await store.aclose()


async def test_a_given_pool_is_used_and_left_open(pg_dsn: str, pg_schema: str) -> None:
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) as pool:
        async with PostgresStore(pool=pool, schema=pg_schema) as store:
            assert store.pool is pool
            await store.create_run(fs.RunRecord("r", None, (), None, fs.RunStatus.RUNNING, T0))
        assert not pool.is_closing()
        assert await pool.fetchval(f'SELECT count(*) FROM "{pg_schema}".runs') == 1


class StatementCounter:
    """Counts the statements sent on a pool's connections."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, record: Any) -> None:
        self.queries.append(record.query)

    async def init(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(self)


@pytest.fixture
async def counted(
    pg_dsn: str, pg_schema: str
) -> AsyncIterator[tuple[PostgresStore, StatementCounter]]:
    counter = StatementCounter()
    options = {"init": counter.init}
    async with PostgresStore(
        pg_dsn, schema=pg_schema, flush_interval=60, max_size=1, connect_options=options
    ) as store:
        # Warm up: asyncpg introspects the array types once per connection.
        await store.save_record(record("warm", fs.Status.RUNNING, "r0"))
        await store.io_manager.store(IOContext("warm", None, "r0"), 0)
        await store.save_record(record("warm", fs.Status.SUCCEEDED, "r0"))
        await store.io_manager.store(IOContext("warm", None, None), 0)
        counter.queries.clear()
        yield store, counter


async def test_an_asset_costs_one_statement(
    counted: tuple[PostgresStore, StatementCounter], pg_conn: asyncpg.Connection
) -> None:
    """running record + value + succeeded record: one statement, value and record together."""
    store, counter = counted
    context = IOContext("a", None, "r1")
    await store.save_record(record("a", fs.Status.RUNNING))
    await store.io_manager.store(context, {"n": 1})
    assert counter.queries == []
    assert await store.io_manager.load(context) == {"n": 1}  # read your own writes
    assert [r.status for r in await store.get_records("r1")] == [fs.Status.RUNNING]
    counter.queries.clear()
    await store.save_record(record("a", fs.Status.SUCCEEDED))
    assert len(counter.queries) == 1
    assert (await committed(pg_conn, store.schema))["a"] == "succeeded"
    value = await pg_conn.fetchval(
        f'SELECT value_json::text FROM "{store.schema}".asset_values WHERE asset = $1', "a"
    )
    assert value == '{"n": 1}'


async def test_a_value_outside_an_open_record_is_written_at_once(
    counted: tuple[PostgresStore, StatementCounter], pg_conn: asyncpg.Connection
) -> None:
    store, counter = counted
    await store.io_manager.store(IOContext("a", None, "r1"), 1)
    assert len(counter.queries) == 1
    assert (
        await pg_conn.fetchval(
            f"SELECT run_id FROM \"{store.schema}\".asset_values WHERE asset = 'a'"
        )
        == "r1"
    )


async def test_running_records_are_written_after_the_flush_interval(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema, flush_interval=0.05) as store:
        await store.save_record(record("slow", fs.Status.RUNNING))
        assert await committed(pg_conn, pg_schema) == {}
        with anyio.fail_after(5):
            while await committed(pg_conn, pg_schema) != {"slow": "running"}:
                await anyio.sleep(0.02)  # the timer writes it in the background
        await store.save_record(record("slow", fs.Status.SUCCEEDED))
        assert await committed(pg_conn, pg_schema) == {"slow": "succeeded"}


async def test_close_writes_what_is_pending(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, flush_interval=60)
    await store.save_record(record("a", fs.Status.RUNNING))
    await store.aclose()
    assert await committed(pg_conn, pg_schema) == {"a": "running"}


async def test_no_deferral_with_a_zero_interval(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema, flush_interval=0) as store:
        await store.save_record(record("a", fs.Status.RUNNING))
        assert await committed(pg_conn, pg_schema) == {"a": "running"}


async def test_a_failed_write_keeps_what_it_carried(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema, flush_interval=60) as store:
        await store.save_record(record("waiting", fs.Status.RUNNING))
        with pytest.raises(fs.StorageError, match="cannot hold NUL"):
            await store.save_record(record("bad\x00name", fs.Status.SUCCEEDED))
        # A database error (a too long varchar would do; here: a dropped table) keeps what
        # the failed statement carried for others.
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest RENAME TO latest_gone')
        with pytest.raises(fs.StorageError, match="could not save the record of asset 'other'"):
            await store.save_record(record("other", fs.Status.SUCCEEDED))
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest_gone RENAME TO latest')
        assert [r.asset for r in await store.get_records("r1")] == ["waiting"]
        await store.flush()
        assert await committed(pg_conn, pg_schema) == {"waiting": "running"}


async def test_racing_flushes_never_regress_a_record(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    """Background flushes of running records race terminal saves; the terminal state wins."""
    async with PostgresStore(pg_dsn, schema=pg_schema, flush_interval=0.001) as store:

        async def one(i: int) -> None:
            await store.save_record(record(f"a{i}", fs.Status.RUNNING))
            await anyio.sleep(0.001 * (i % 5))
            await store.save_record(record(f"a{i}", fs.Status.SUCCEEDED))

        async with anyio.create_task_group() as tg:
            for i in range(200):
                tg.start_soon(one, i)
    assert set((await committed(pg_conn, pg_schema)).values()) == {"succeeded"}


def test_importing_without_asyncpg_names_the_extra() -> None:
    assert import_error_without("asyncpg", "flowstone.ext.postgres") == (
        "MissingExtraError flowstone.ext.postgres needs asyncpg: pip install 'flowstone[postgres]'"
    )
