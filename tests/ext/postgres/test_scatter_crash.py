"""The durable scatter survives kills and restarts: child processes are SIGKILLed at random
moments and run again, a worker dies beside the starter and another worker, the server
restarts in the middle of a run and of a resume (the suite's own throwaway cluster, see
``throwaway_pg``, never the shared test server). Each time, every item ends with exactly one
stored result, the gathered value is right, and little work is done twice.

The children run ``scatter_child.py``; each item records its execution in the side table
``executions(key, pid)``, so re-executions are counted from outside.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import pytest

from child_process import Child, command_args, wait_until
from conftest_pg import drop_schema
from throwaway_pg import ThrowawayCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHILD = Path(__file__).with_name("scatter_child.py")


@pytest.fixture
def spawn(python: str, child_env: dict[str, str], tmp_path: Path, pg_dsn: str, side: str) -> Any:
    def start(role: str, **options: Any) -> Child:
        args = command_args(role, pg_dsn, side, **options)
        return Child(python, CHILD, args, child_env, tmp_path)

    return start


async def finished(conn: asyncpg.Connection, schema: str) -> int:
    try:
        value = await conn.fetchval(
            f'SELECT coalesce(sum(succeeded + failed), 0) FROM "{schema}".scatter_barriers'
        ) + await conn.fetchval(
            f'SELECT coalesce(sum(succeeded), 0) FROM "{schema}".scatter_counts'
        )
    except asyncpg.UndefinedTableError:
        return 0
    return int(value)


async def check_results(conn: asyncpg.Connection, schema: str, items: int) -> tuple[int, int]:
    """Exactly one terminal, right result per item; return (executions, distinct keys)."""
    rows = await conn.fetchrow(
        f"""SELECT count(*) AS n,
                count(*) FILTER (WHERE status = 'succeeded') AS ok,
                count(*) FILTER (WHERE (result->>'i')::bigint = idx
                                   AND (result->>'sq')::bigint = idx * idx) AS right
            FROM "{schema}".scatter_items"""
    )
    assert rows is not None and tuple(rows) == (items, items, items)
    barrier = await conn.fetchrow(
        f"""SELECT status, total, (succeeded + (SELECT coalesce(sum(c.succeeded), 0)
                FROM "{schema}".scatter_counts c WHERE c.barrier_id = b.id))::bigint,
            failed FROM "{schema}".scatter_barriers b"""
    )
    assert barrier is not None and tuple(barrier) == ("done", items, items, 0)
    executed = await conn.fetchrow(
        f'SELECT count(*) AS n, count(DISTINCT key) AS keys FROM "{schema}".executions'
    )
    assert executed is not None and executed["keys"] == items  # every item ran at least once
    return int(executed["n"]), int(executed["keys"])


async def test_a_starter_killed_again_and_again_resumes_to_one_result_per_item(
    spawn: Any, pg_conn: asyncpg.Connection, side: str
) -> None:
    items, concurrency, kills = 3000, 20, 4
    rng = random.Random(20250102)
    options = {"items": items, "max_concurrent": concurrency, "sleep": 0.01, "lease": 5}
    done = 0
    for _ in range(kills):
        child = spawn("starter", **options)
        target = done + rng.randint(150, 450)

        async def progressed(target: int = target) -> bool:
            return await finished(pg_conn, side) >= target

        await wait_until(progressed, child, f"{target} finished items")
        await anyio.sleep(rng.uniform(0, 0.03))
        child.kill()
        done = await finished(pg_conn, side)
        assert done < items, "the run ended before it could be killed; make it longer"
    result = await spawn("starter", **options).finish(90)
    assert result == {"ok": True, "len": items}
    executions, _ = await check_results(pg_conn, side, items)
    again = executions - items
    assert again <= 2 * concurrency * kills, f"{again} re-executions after {kills} kills"


async def test_a_killed_worker_s_items_return_before_its_lease(
    spawn: Any, pg_conn: asyncpg.Connection, side: str
) -> None:
    items, concurrency, lease = 4000, 10, 30.0
    options = {"items": items, "max_concurrent": concurrency, "sleep": 0.02, "lease": lease}
    starter = spawn("starter", **options)

    async def barrier_open() -> bool:
        try:
            return bool(await pg_conn.fetchval(f'SELECT count(*) FROM "{side}".scatter_barriers'))
        except asyncpg.UndefinedTableError:
            return False

    await wait_until(barrier_open, starter, "the barrier")
    doomed = spawn("worker", **options)
    survivor = spawn("worker", **options)

    async def doomed_worked() -> bool:
        ran = await pg_conn.fetchval(
            f'SELECT count(*) FROM "{side}".executions WHERE pid = $1', doomed.pid
        )
        return int(ran) >= 100

    await wait_until(doomed_worked, doomed, "the doomed worker's first items")
    worker_no = await pg_conn.fetchval(
        f'SELECT worker_no FROM "{side}".scatter_workers WHERE pid = $1', doomed.pid
    )
    before = await finished(pg_conn, side)
    doomed.kill()
    killed_at = time.monotonic()
    assert before < items - 1000, "the run is too short to see the recovery"

    async def recovered() -> bool:
        held = await pg_conn.fetchval(
            f'SELECT count(*) FROM "{side}".scatter_items '
            "WHERE status = 'running' AND worker = $1",
            worker_no,
        )
        return bool(held == 0)

    await wait_until(recovered, starter, "the dead worker's items to come back", interval=0.05)
    # The lock of a dead process is gone at once: its items return long before its lease.
    assert time.monotonic() - killed_at < 5.0
    result = await starter.finish(90)
    assert result == {"ok": True, "len": items}
    stats = await survivor.finish(30)
    assert stats["items"] > 0 and stats["barriers"] >= 1
    executions, _ = await check_results(pg_conn, side, items)
    assert executions - items <= 2 * concurrency
    ran_by = {
        r["pid"] for r in await pg_conn.fetch(f'SELECT DISTINCT pid FROM "{side}".executions')
    }
    assert {starter.pid, doomed.pid, survivor.pid} <= ran_by


# -- a server restart --------------------------------------------------------------------
# On the suite's own cluster (``throwaway_pg``), never on the shared test server.


async def _restart_server(cluster: ThrowawayCluster) -> None:
    await anyio.to_thread.run_sync(cluster.restart)


async def _create_side(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            f'CREATE TABLE "{schema}".executions (key text NOT NULL, pid integer NOT NULL)'
        )
    finally:
        await conn.close()


@pytest.fixture
async def restartable(throwaway_pg: ThrowawayCluster) -> AsyncIterator[str]:
    """A side schema (as ``side``) on the throwaway cluster; dropped afterwards."""
    schema = f"fs_test_{uuid.uuid4().hex[:12]}"
    await _create_side(throwaway_pg.dsn, schema)
    try:
        yield schema
    finally:
        if not throwaway_pg.running():  # whatever happened, leave the server up
            await anyio.to_thread.run_sync(throwaway_pg.start)
        await drop_schema(throwaway_pg.dsn, schema)


async def test_a_server_restart_in_a_run_and_in_a_resume(
    python: str,
    child_env: dict[str, str],
    tmp_path: Path,
    throwaway_pg: ThrowawayCluster,
    restartable: str,
) -> None:
    items, concurrency = 5000, 20
    options = {"items": items, "max_concurrent": concurrency, "sleep": 0.01, "lease": 5}
    pg_dsn, side = throwaway_pg.dsn, restartable

    def spawn(role: str, **options: Any) -> Child:
        args = command_args(role, pg_dsn, side, **options)
        return Child(python, CHILD, args, child_env, tmp_path)

    async def progress_at_least(target: int) -> Any:
        async def check() -> bool:
            try:
                conn = await asyncpg.connect(pg_dsn, timeout=2)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False
            try:
                return await finished(conn, side) >= target
            finally:
                await conn.close()

        return check

    # In the middle of a run: the child retries with backoff and finishes.
    child = spawn("starter", run_id="restart-run", **options)
    await wait_until(await progress_at_least(500), child, "500 finished items")
    await _restart_server(throwaway_pg)
    assert await child.finish(90) == {"ok": True, "len": items}
    assert "retrying" in child.err.read_text(), "the run did not see the restart"
    conn = await asyncpg.connect(pg_dsn)
    try:
        executions, _ = await check_results(conn, side, items)
        assert executions - items <= 2 * concurrency
        await conn.execute(f'TRUNCATE "{side}".executions')
        for table in ("scatter_items", "scatter_counts", "scatter_barriers"):
            await conn.execute(f'DELETE FROM "{side}".{table}')
    finally:
        await conn.close()

    # In the middle of a resume: killed, started again, the server restarts, it finishes.
    child = spawn("starter", run_id="restart-resume", **options)
    await wait_until(await progress_at_least(400), child, "400 finished items")
    child.kill()
    child = spawn("starter", run_id="restart-resume", **options)
    await wait_until(await progress_at_least(1200), child, "1200 finished items")
    await _restart_server(throwaway_pg)
    assert await child.finish(90) == {"ok": True, "len": items}
    assert "retrying" in child.err.read_text(), child.output()
    conn = await asyncpg.connect(pg_dsn)
    try:
        executions, _ = await check_results(conn, side, items)
        assert executions - items <= 2 * concurrency * 2
    finally:
        await conn.close()
