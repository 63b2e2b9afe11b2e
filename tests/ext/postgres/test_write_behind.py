"""Succeeded records written behind the run: dependents go ahead, records land in order in
group commits, an asset counts as succeeded once its record is durable, and a failed write
takes every record begun after it down with it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.protocols import PipelinedRecordStore

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 1, 2, tzinfo=UTC)


def record(asset: str, run_id: str = "r1") -> fs.MaterializationRecord:
    return fs.MaterializationRecord(
        run_id=run_id, asset=asset, partition=None, status=fs.Status.SUCCEEDED, started_at=T0
    )


async def stored(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch(f'SELECT asset, status FROM "{schema}".materializations')
    return {r["asset"]: r["status"] for r in rows}


def chain(length: int) -> fs.Pipeline:
    async def root() -> int:
        return 0

    async def step(prev: int) -> int:
        return prev + 1

    assets: list[fs.AssetDef[..., Any]] = [fs.asset(name="c0")(root)]
    assets += [fs.asset(name=f"c{i}", deps={"prev": f"c{i - 1}"})(step) for i in range(1, length)]
    return fs.Pipeline(assets, name="chain")


def test_the_store_says_when_it_writes_behind() -> None:
    assert isinstance(PostgresStore("postgresql://x/y"), PipelinedRecordStore)
    assert PostgresStore("postgresql://x/y").writes_behind
    assert not PostgresStore("postgresql://x/y", write_behind=False).writes_behind
    assert not PostgresStore("postgresql://x/y", flush_interval=0).writes_behind
    assert not isinstance(fs.MemoryStore(), PipelinedRecordStore)


async def test_a_chain_commits_in_groups_and_is_durable_when_the_run_ends(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    writes: list[str] = []

    async def log_writes(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(
            lambda r: writes.append(r.query) if "materializations" in r.query else None
        )

    store = PostgresStore(pg_dsn, schema=pg_schema, connect_options={"init": log_writes})
    pipeline = chain(60)
    async with fs.Runtime(store=store) as runtime:
        result = await runtime.materialize(pipeline)
        assert result.ok and result["c59"] == 59
        records = await stored(pg_conn, pg_schema)  # durable when materialize returns
        assert records == {f"c{i}": "succeeded" for i in range(60)}
        values = await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".asset_values')
        assert values == 60
    inserts = [q for q in writes if "INSERT INTO" in q]
    assert len(inserts) < 60  # records begun while a write was in flight went together


async def test_with_write_behind_off_an_asset_sees_its_inputs_stored(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    seen: list[dict[str, str]] = []

    @fs.asset
    def first() -> int:
        return 1

    @fs.asset
    async def second(first: int) -> int:
        seen.append(await stored(pg_conn, pg_schema))
        return first + 1

    store = PostgresStore(pg_dsn, schema=pg_schema, write_behind=False)
    async with fs.Runtime(store=store) as runtime:
        assert (await runtime.materialize([first, second]))["second"] == 2
    assert seen == [{"first": "succeeded", "second": "running"}] or seen == [{"first": "succeeded"}]


async def test_records_begun_after_a_failed_write_fail_and_are_not_stored(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema) as store:
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest RENAME TO latest_gone')
        first = store.begin_save_record(record("a"))
        await asyncio.sleep(0)  # its write is in flight
        second = store.begin_save_record(record("b"))
        # A record saved the ordinary way meanwhile goes after them, and fails with them.
        other = asyncio.ensure_future(store.save_record(record("c")))
        with pytest.raises(fs.StorageError, match="could not save"):
            await first
        with pytest.raises(fs.StorageError, match="could not save"):
            await second
        with pytest.raises(fs.StorageError):
            await other
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest_gone RENAME TO latest')
        await store.flush()
        assert await store.get_records("r1") == []
    assert await stored(pg_conn, pg_schema) == {}


async def test_a_failed_write_fails_the_run_and_stores_nothing_after_it(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    pipeline = chain(5)
    async with fs.Runtime(store=store) as runtime:
        await runtime.materialize(pipeline)  # tables exist, statements are prepared
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest RENAME TO latest_gone')
        with pytest.raises(fs.StorageError):
            await runtime.materialize(pipeline, run_id="broken", force=True)
        await pg_conn.execute(f'ALTER TABLE "{pg_schema}".latest_gone RENAME TO latest')
        rows = await pg_conn.fetch(
            f'SELECT asset, status FROM "{pg_schema}".materializations WHERE run_id = $1',
            "broken",
        )
        assert {r["status"] for r in rows} <= {"running"}  # no succeeded record landed
        result = await runtime.materialize(pipeline, run_id="broken")  # resume
        assert result.ok and result["c4"] == 4


async def test_the_current_record_counts_what_is_still_being_written(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    seen: list[str | None] = []
    asked = asyncio.Event()
    store = PostgresStore(pg_dsn, schema=pg_schema)

    @fs.asset
    def upstream() -> int:
        return 1

    @fs.asset
    async def downstream(upstream: int) -> int:
        current = await store.latest("upstream", None)
        seen.append(None if current is None else current.run_id)
        asked.set()
        return upstream + 1

    async with fs.Runtime(store=store) as runtime:
        await runtime.migrate()
        # Hold the writes back (reads go on) until the downstream asset has asked.
        async with pg_conn.transaction():
            await pg_conn.execute(f'LOCK TABLE "{pg_schema}".latest IN EXCLUSIVE MODE')
            run = asyncio.ensure_future(runtime.materialize([upstream, downstream], run_id="now"))
            await asyncio.wait_for(asked.wait(), 10)
            assert not run.done()  # the upstream record is still being written
        result = await run
    assert result.ok and seen == ["now"]
