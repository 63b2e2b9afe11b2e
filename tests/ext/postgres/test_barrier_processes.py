"""Scatters kept in ``PostgresBarrierStore`` across real processes: a starter SIGKILLed and
started again resumes to one result per item, and a worker process shares the items.

The children run ``barrier_child.py``; each item records its execution in the side table
``executions(key, pid)``, so re-executions are counted from outside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from child_process import Child, command_args, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CHILD = Path(__file__).with_name("barrier_child.py")


@pytest.fixture
def spawn(python: str, child_env: dict[str, str], tmp_path: Path, pg_dsn: str, side: str) -> Any:
    def start(role: str, **options: Any) -> Child:
        return Child(
            python, CHILD, command_args(role, pg_dsn, side, **options), child_env, tmp_path
        )

    return start


async def executed(conn: asyncpg.Connection, schema: str, pid: int | None = None) -> int:
    sql = f'SELECT count(*) FROM "{schema}".executions'
    value = await (conn.fetchval(sql + " WHERE pid = $1", pid) if pid else conn.fetchval(sql))
    return int(value)


async def one_right_result_per_item(conn: asyncpg.Connection, schema: str, items: int) -> None:
    row = await conn.fetchrow(
        f"""SELECT count(*) AS n,
                count(*) FILTER (WHERE status = 'succeeded'
                                 AND (result->>'i')::bigint = idx
                                 AND (result->>'sq')::bigint = idx * idx) AS right
            FROM "{schema}".scatter_items"""
    )
    assert row is not None and tuple(row) == (items, items)


async def test_a_killed_starter_resumes_to_one_result_per_item(
    spawn: Any, pg_conn: asyncpg.Connection, side: str
) -> None:
    items, concurrency, kills = 1500, 10, 2
    options = {"items": items, "max_concurrent": concurrency, "sleep": 0.005}
    for kill in range(kills):
        child = spawn("starter", **options)
        target = (kill + 1) * 300

        async def progressed(target: int = target) -> bool:
            return await executed(pg_conn, side) >= target

        await wait_until(progressed, child, f"{target} executions")
        child.kill()
        assert await executed(pg_conn, side) < items, "the run ended before the kill"
    result = await spawn("starter", **options).finish(90)
    assert result == {"ok": True, "len": items}
    await one_right_result_per_item(pg_conn, side, items)
    again = await executed(pg_conn, side) - items
    # At most what was in flight or unwritten at each kill runs again.
    assert again <= 3 * concurrency * kills, f"{again} re-executions after {kills} kills"


async def test_a_worker_process_shares_the_items(
    spawn: Any, pg_conn: asyncpg.Connection, side: str
) -> None:
    items = 1500
    options = {"items": items, "max_concurrent": 5, "sleep": 0.01}
    starter = spawn("starter", **options)

    async def started() -> bool:
        return await executed(pg_conn, side) > 0

    await wait_until(started, starter, "the first item")
    worker = spawn("worker", **options)
    joined = await worker.finish(90)
    result = await starter.finish(90)
    assert result == {"ok": True, "len": items}
    assert joined["items"] > 0
    assert await executed(pg_conn, side, worker.pid) >= joined["items"]
    await one_right_result_per_item(pg_conn, side, items)
