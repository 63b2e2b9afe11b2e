"""Routing decisions and parallel branch records are durable under a PostgresStore.

A router's decision commits before any routed asset starts, so a run resumed in another
process reuses it, even when the router's own record was still waiting to be written
when the first process was killed.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import pytest

import flowstone as fs
from child_process import Child, command_args
from flowstone.ext.parallel import branch, parallel
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.routing import routed_from, router
from flowstone.protocols import RouteDecision

pytestmark = pytest.mark.postgres

CHILD = Path(__file__).with_name("routing_child.py")


@pytest.fixture
async def side(pg_dsn: str, pg_schema: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's schema with the child's side tables, and a connection to read them."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    await conn.execute(
        f'CREATE TABLE "{pg_schema}".router_calls (n bigint GENERATED ALWAYS AS IDENTITY)'
    )
    await conn.execute(f'CREATE TABLE "{pg_schema}".ran (name text NOT NULL)')
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.slow
async def test_a_run_resumed_in_another_process_keeps_the_killed_runs_route(
    python: str,
    child_env: dict[str, str],
    tmp_path: Path,
    pg_dsn: str,
    pg_schema: str,
    side: asyncpg.Connection,
) -> None:
    def spawn(**options: Any) -> Child:
        args = command_args("run", pg_dsn, pg_schema, **options)
        return Child(python, CHILD, args, child_env, tmp_path)

    # The chosen routed asset kills its process as it starts: the router's record, written
    # behind the run, is most often lost with it, so the resumed run executes the router
    # again, and the router would now choose the other route.
    first = spawn(die=True)
    code = await anyio.to_thread.run_sync(lambda: first.proc.wait(60))
    assert code == -signal.SIGKILL, first.output()

    result = await spawn().finish(timeout=60)

    assert result == {"status": "succeeded", "left": "succeeded", "right": "skipped"}
    ran = [r["name"] for r in await side.fetch(f'SELECT name FROM "{pg_schema}".ran')]
    assert ran == ["left"]


@fs.asset
@router()
def coin() -> str:
    return "heads"


@fs.asset
@routed_from("coin")
def heads() -> str:
    return "H"


@fs.asset
@routed_from("coin")
def tails() -> str:
    return "T"


async def test_a_decision_is_readable_from_another_store_on_the_same_schema(
    pg_dsn: str, pg_schema: str
) -> None:
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        result = await rt.materialize(fs.Pipeline([coin, heads, tails]), run_id="r1")
        assert result.records["tails"].status is fs.Status.SKIPPED

    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as other:
        routing: Any = other.coordinators.get("router")
        decision = await routing.get_decision("r1", "coin", None)
        assert isinstance(decision, RouteDecision)
        assert (decision.chosen, decision.partition) == ("heads", None)
        assert decision.decided_at is not None
        assert await routing.get_decision("r1", "coin", "2025-01-01") is None
        assert await routing.get_decision("other-run", "coin", None) is None


async def test_a_recorded_decision_is_replaced_not_duplicated(pg_dsn: str, pg_schema: str) -> None:
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        routing: Any = rt.coordinators.get("router")
        for chosen in ("heads", None, "tails"):
            await routing.record_decision(
                RouteDecision(
                    run_id="r",
                    router="coin",
                    partition="p/1",
                    chosen=chosen,
                    input_versions={"x": "v1"},
                )
            )
        decision = await routing.get_decision("r", "coin", "p/1")
        assert decision is not None
        assert (decision.chosen, dict(decision.input_versions)) == ("tails", {"x": "v1"})


@fs.asset
@parallel(branch("fast", final="fast_done"), branch("slow", final="slow_done", required=False))
def both() -> str:
    return "joined"


@fs.asset
def fast_done() -> int:
    return 1


@fs.asset
def slow_done() -> int:
    return 2


async def test_branch_records_are_readable_from_another_store(pg_dsn: str, pg_schema: str) -> None:
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        result = await rt.materialize(fs.Pipeline([both, fast_done, slow_done]), run_id="p1")
        assert result.records["both"].status is fs.Status.SUCCEEDED
        here = await rt.coordinators.get("parallel").branches("p1", "both", None)  # type: ignore[attr-defined]

    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as other:
        records = await other.coordinators.get("parallel").branches("p1", "both", None)  # type: ignore[attr-defined]
    records.sort(key=lambda r: r.branch)
    here.sort(key=lambda r: r.branch)
    assert [(r.branch, r.final, r.status, r.required) for r in records] == [
        ("fast", "fast_done", fs.Status.SUCCEEDED, True),
        ("slow", "slow_done", fs.Status.SUCCEEDED, False),
    ]
    assert records == here
    assert all(r.started_at is not None and r.ended_at is not None for r in records)
