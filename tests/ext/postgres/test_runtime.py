"""A durable runtime end to end: values in PostgreSQL, reuse across runtimes, resume."""

from __future__ import annotations

import subprocess
import textwrap
from typing import Any

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.routing import choice, routed_from, router

pytestmark = pytest.mark.postgres

calls: list[str] = []
broken: set[str] = set()


@fs.asset
async def raw() -> list[int]:
    calls.append("raw")
    return [1, 2, 3, 4]


@fs.asset
def doubled(raw: list[int]) -> list[int]:
    calls.append("doubled")
    return [n * 2 for n in raw]


@fs.asset
async def total(doubled: list[int]) -> int:
    calls.append("total")
    if "total" in broken:
        raise RuntimeError("total is broken")
    return sum(doubled)


@fs.asset(io_manager="memory")
async def scratch(raw: list[int]) -> int:
    return len(raw)


PIPELINE = fs.Pipeline([raw, doubled, total, scratch], name="numbers")


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    broken.clear()


async def test_one_line_makes_the_runtime_durable(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    async with fs.Runtime(store=store) as rt:
        assert rt.store is store
        assert rt.default_io_manager == "postgres"
        assert rt.io_managers.get("postgres") is store.io_manager
        result = await rt.materialize(PIPELINE, select=["total", "scratch"], run_id="nightly-1")
        assert result.ok and result["total"] == 20 and result["scratch"] == 4
    rows = await pg_conn.fetch(
        f'SELECT asset, value_json::text AS v, run_id FROM "{pg_schema}".asset_values ORDER BY asset'
    )
    assert [(r["asset"], r["v"], r["run_id"]) for r in rows] == [
        ("doubled", "[2, 4, 6, 8]", "nightly-1"),
        ("raw", "[1, 2, 3, 4]", "nightly-1"),
        ("total", "20", "nightly-1"),
    ]  # scratch chose the memory IO manager
    statuses = await pg_conn.fetch(
        f'SELECT asset, status FROM "{pg_schema}".materializations WHERE run_id = $1 ORDER BY asset',
        "nightly-1",
    )
    assert {(r["asset"], r["status"]) for r in statuses} == {
        ("raw", "succeeded"),
        ("doubled", "succeeded"),
        ("total", "succeeded"),
        ("scratch", "succeeded"),
    }
    run = await pg_conn.fetchrow(f'SELECT status, pipeline FROM "{pg_schema}".runs')
    assert run is not None and (run["status"], run["pipeline"]) == ("succeeded", "numbers")


async def test_a_new_runtime_loads_and_reuses_current_values(pg_dsn: str, pg_schema: str) -> None:
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        await rt.materialize(PIPELINE, select="total")
    assert calls == ["raw", "doubled", "total"]
    calls.clear()
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        assert await rt.load("doubled") == [2, 4, 6, 8]
        states = await rt.status(PIPELINE)
        assert {n: s.state for n, s in states.items()} == {
            "raw": "current",
            "doubled": "current",
            "total": "current",
            "scratch": "missing",
        }
        result = await rt.materialize(PIPELINE, select="total")
        assert result["total"] == 20
        assert calls == ["total"]  # upstream reused from PostgreSQL
        assert result.records["doubled"].reused
        history = await rt.history("total")
        assert len(history) == 2


async def test_resume_by_run_id_skips_finished_assets(pg_dsn: str, pg_schema: str) -> None:
    broken.add("total")
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        failed = await rt.materialize(PIPELINE, select="total", run_id="r-1", raise_on_error=False)
        assert not failed.ok
    assert calls == ["raw", "doubled", "total"]
    calls.clear()
    broken.clear()
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        resumed = await rt.materialize(PIPELINE, select="total", run_id="r-1")
        assert resumed.ok and resumed.resumed and resumed["total"] == 20
        assert calls == ["total"]
        run = await rt.store.get_run("r-1")
        assert run is not None and run.status is fs.RunStatus.SUCCEEDED
        calls.clear()
        again = await rt.resume("r-1", PIPELINE)
        assert again.ok and calls == []


async def test_resume_after_the_process_dies(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection, python: str, child_env: dict[str, str]
) -> None:
    """A child process dies (``os._exit``) inside the third asset; the parent resumes the run.

    The store writes each record before the next asset starts (``write_behind=False``): with
    records written behind the run, the second asset's record may still be in flight when
    the third kills the process, and the second then runs again on resume, as documented.
    """
    await pg_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    await pg_conn.execute(f'CREATE TABLE "{pg_schema}".calls (asset text)')
    module = textwrap.dedent(
        """
        import os, sys
        import asyncpg
        import flowstone as fs

        DSN, SCHEMA = sys.argv[1], sys.argv[2]

        async def note(name):
            conn = await asyncpg.connect(DSN)
            await conn.execute(f'INSERT INTO "{SCHEMA}".calls VALUES ($1)', name)
            await conn.close()

        @fs.asset
        async def first() -> int:
            await note("first")
            return 1

        @fs.asset
        async def second(first: int) -> int:
            await note("second")
            return first + 1

        @fs.asset
        async def third(second: int) -> int:
            await note("third")
            if os.environ.get("CRASH"):
                os._exit(9)
            return second + 1

        PIPELINE = fs.Pipeline([first, second, third], name="crashy")
        """
    )
    runner = module + textwrap.dedent(
        """
        import anyio
        from flowstone.ext.postgres import PostgresStore

        async def main():
            store = PostgresStore(DSN, schema=SCHEMA, write_behind=False)
            async with fs.Runtime(store=store) as rt:
                result = await rt.materialize(PIPELINE, run_id="crash-1")
                print(result["third"])

        anyio.run(main)
        """
    )
    env = dict(child_env, CRASH="1")
    crashed = subprocess.run(
        [python, "-c", runner, pg_dsn, pg_schema],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == 9, crashed.stderr
    finished = subprocess.run(
        [python, "-c", runner, pg_dsn, pg_schema],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "3"
    counted = await pg_conn.fetch(
        f'SELECT asset, count(*) AS n FROM "{pg_schema}".calls GROUP BY asset'
    )
    assert {r["asset"]: r["n"] for r in counted} == {"first": 1, "second": 1, "third": 2}
    records = await pg_conn.fetch(
        f"SELECT asset, status FROM \"{pg_schema}\".materializations WHERE run_id = 'crash-1'"
    )
    assert {(r["asset"], r["status"]) for r in records} == {
        ("first", "succeeded"),
        ("second", "succeeded"),
        ("third", "succeeded"),
    }


async def test_partitioned_assets_keep_partitions_apart(pg_runtime: fs.Runtime) -> None:
    @fs.asset(partitions=fs.DailyPartitions(start="2025-01-01"))
    async def day(ctx: fs.Context) -> str:
        return f"value of {ctx.partition}"

    for key in ("2025-01-01", "2025-01-02"):
        await pg_runtime.materialize([day], partition=key)
    assert await pg_runtime.load("day", "2025-01-02") == "value of 2025-01-02"
    io: Any = pg_runtime.io_managers.get("postgres")
    assert await io.list_partitions("day") == ["2025-01-01", "2025-01-02"]
    await pg_runtime.invalidate("day", "2025-01-01")
    states = await pg_runtime.status([day], partition="2025-01-01")
    assert states["day"].state == "stale"  # still stored, no longer current


async def test_runtime_metadata_lands_in_the_record(pg_runtime: fs.Runtime) -> None:
    @fs.asset
    async def described(ctx: fs.Context) -> int:
        ctx.add_metadata(rows=3, source={"kind": "api"})
        return 3

    result = await pg_runtime.materialize([described])
    (record,) = await pg_runtime.store.get_records(result.run_id)
    assert record.metadata == {"rows": 3, "source": {"kind": "api"}}


async def test_a_routed_join_reads_current_from_postgres(pg_runtime: fs.Runtime) -> None:
    @fs.asset
    @router(choice("left", when=lambda deps: True), default="right")
    async def pick() -> None: ...

    @fs.asset
    @routed_from("pick")
    async def left() -> str:
        return "l"

    @fs.asset
    @routed_from("pick")
    async def right() -> str:
        return "r"

    @fs.asset(optional_deps=["left", "right"])
    async def joined(left: str | None = None, right: str | None = None) -> str | None:
        return left or right

    pipeline = fs.Pipeline([pick, left, right, joined])
    await pg_runtime.materialize(pipeline)
    states = await pg_runtime.status(pipeline)
    assert {n: s.state for n, s in states.items()} == {
        "pick": "current",
        "left": "current",
        "right": "skipped",
        "joined": "current",
    }
