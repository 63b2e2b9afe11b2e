"""Schedules on PostgreSQL: the store's contract, ticks fired once across processes,
history kept across restarts, and a claim whose process was killed taken over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import flowstone as fs
from child_process import Child, command_args, wait_until
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.schedule import (
    RunRequest,
    Schedule,
    Scheduler,
    TickRecord,
    TickStatus,
    schedule_store_for,
    sensor,
)
from flowstone.testing import VirtualClock

CHILD = Path(__file__).with_name("schedules_child.py")
START = datetime(2025, 1, 1, tzinfo=UTC)


@fs.asset(partitions=fs.HourlyPartitions(start="2024-01-01", fmt="%Y-%m-%dT%H"))
async def hourly(ctx: fs.Context) -> str | None:
    return ctx.partition


def by_hour(tick: datetime) -> str:
    return tick.strftime("%Y-%m-%dT%H")


def record(key: str, tick: datetime, **changes: Any) -> TickRecord:
    base = TickRecord(
        name="s",
        key=key,
        tick=tick,
        run_id=f"s:{key}",
        status=TickStatus.CLAIMED,
        select=("a",),
        partition="p",
        tags={"schedule": "s"},
        owner="one",
        lease_until=tick + timedelta(minutes=1),
    )
    return base.replace(**changes)


async def test_the_schedule_store_contract_on_postgres(pg_store: PostgresStore) -> None:
    store = pg_store.schedule_store()
    assert pg_store.schedule_store() is store
    assert await store.register("s", START) == START
    assert await store.register("s", START + timedelta(days=1)) == START
    first = record("k1", START)
    assert await store.claim(first)
    assert not await store.claim(first.replace(owner="two"))
    assert await store.get("s", "k1") == first
    assert [r.key for r in await store.active("s", START)] == ["k1"]
    assert await store.earliest_lease(["s"], "two") == START + timedelta(minutes=1)
    assert await store.earliest_lease(["s"], "one") is None
    assert not await store.renew("s", "k1", "two", START + timedelta(hours=1))
    assert await store.renew("s", "k1", "one", START + timedelta(minutes=2))
    assert await store.reclaim(["s"], "two", START + timedelta(minutes=1), START) == []
    taken = await store.reclaim(
        ["s"], "two", START + timedelta(minutes=3), START + timedelta(minutes=4)
    )
    assert [(r.key, r.owner) for r in taken] == [("k1", "two")]
    assert not await store.finish("s", "k1", "one", TickStatus.SUCCEEDED, START)
    assert await store.finish("s", "k1", "two", TickStatus.SUCCEEDED, START, None)
    skipped = record("k2", START + timedelta(hours=1), status=TickStatus.SKIPPED, reason="overlap")
    assert await store.skip([skipped, skipped.replace(key="k1")]) == 1
    history = await store.history("s")
    assert [(r.key, r.status) for r in history] == [
        ("k2", TickStatus.SKIPPED),
        ("k1", TickStatus.SUCCEEDED),
    ]
    assert history[1].lease_until is None and history[1].select == ("a",)
    await store.register("sensor", START)
    assert await store.cursor("sensor") is None
    req = record("key-1", START).replace(name="sensor")
    assert await store.commit_poll("sensor", None, "c1", [req, req.replace(key="key-2")]) == [
        req,
        req.replace(key="key-2"),
    ]
    assert await store.commit_poll("sensor", None, "c2", [req]) is None  # the cursor moved
    assert await store.commit_poll("sensor", "c1", "c2", [req]) == []  # a key is never again
    assert await store.cursor("sensor") == "c2"


async def test_a_postgres_runtime_schedules_durably_and_resumes_where_it_stopped(
    pg_store: PostgresStore,
) -> None:
    clock = VirtualClock(START)
    schedule = Schedule(
        [hourly], cron="0 * * * *", partition=by_hour, catchup=timedelta(hours=2), name="h"
    )
    async with fs.Runtime(store=pg_store, clock=clock) as rt:
        assert schedule_store_for(rt) is pg_store.schedule_store()
        async with Scheduler(rt, [schedule]) as scheduler:
            for _ in range(3):
                await scheduler.wait_idle()
                await clock.advance(hours=1)
            await scheduler.wait_idle()
        await clock.advance(hours=5)
    # a new runtime (a restarted process) on the same schema
    async with fs.Runtime(
        store=PostgresStore(pool=pg_store.pool, schema=pg_store.schema), clock=clock
    ) as rt:
        async with Scheduler(rt, [schedule]) as scheduler:
            await scheduler.wait_idle()
            history = await scheduler.store.history("h", limit=50)
        runs = await rt.store.list_runs(limit=50)
    statuses = [(r.tick.hour, r.status, r.reason) for r in reversed(history)]
    assert statuses == [
        (1, TickStatus.SUCCEEDED, None),
        (2, TickStatus.SUCCEEDED, None),
        (3, TickStatus.SUCCEEDED, None),
        (4, TickStatus.SKIPPED, "too_old"),
        (5, TickStatus.SKIPPED, "too_old"),
        (6, TickStatus.SUCCEEDED, None),
        (7, TickStatus.SUCCEEDED, None),
        (8, TickStatus.SUCCEEDED, None),
    ]
    assert sorted(r.partition or "" for r in runs) == [
        f"2025-01-01T0{h}" for h in (1, 2, 3, 6, 7, 8)
    ]
    assert {r.tags["schedule"] for r in runs} == {"h"}


requests: list[str | None] = []


@sensor(interval=10, pipeline=[hourly])
async def files(cursor: str | None) -> Any:
    from flowstone.ext.schedule import SensorResult

    requests.append(cursor)
    n = int(cursor or 0)
    return SensorResult(
        run_requests=[RunRequest(partition=f"2025-01-01T{n % 24:02d}", run_key=f"f{n % 2}")],
        cursor=str(n + 1),
    )


async def test_a_sensor_cursor_and_run_keys_are_durable(pg_store: PostgresStore) -> None:
    clock = VirtualClock(START)
    async with fs.Runtime(store=pg_store, clock=clock) as rt:
        async with Scheduler(rt, [files]) as scheduler:
            for _ in range(3):
                await scheduler.wait_idle()
                await clock.advance(seconds=10)
            await scheduler.wait_idle()
        await clock.advance(seconds=10)
        async with Scheduler(rt, [files]) as scheduler:
            await scheduler.wait_idle()
            await clock.advance(seconds=10)
            await scheduler.wait_idle()
            history = await scheduler.store.history("files")
        assert await scheduler.store.cursor("files") == "6"
    assert requests[:6] == [None, "1", "2", "3", "4", "5"]
    assert sorted(r.key for r in history) == ["f0", "f1"]  # run keys de-duplicate for good
    assert {r.status for r in history} == {TickStatus.SUCCEEDED}


@pytest.fixture
def spawn(
    python: str, child_env: dict[str, str], tmp_path: Path, pg_dsn: str, pg_schema: str
) -> Any:
    def start(role: str, **options: Any) -> Child:
        args = command_args(role, pg_dsn, pg_schema, folder=tmp_path, **options)
        return Child(python, CHILD, args, child_env, tmp_path)

    return start


@pytest.mark.slow
async def test_two_processes_fire_each_tick_once_in_total(
    spawn: Any, pg_store: PostgresStore, tmp_path: Path
) -> None:
    await pg_store.migrate()
    children = [spawn("run", hours=48) for _ in range(2)]

    async def ready() -> bool:
        return len(list(tmp_path.glob("ready-*"))) == 2

    await wait_until(ready, children[0], "both schedulers started")
    (tmp_path / "go").touch()
    results = [await child.finish(120) for child in children]
    assert sum(r["fired"] for r in results) == 48
    history = await pg_store.schedule_store().history("hourly", limit=100)
    assert len(history) == 48 and {r.status for r in history} == {TickStatus.SUCCEEDED}
    runs = await pg_store.list_runs(limit=100)
    assert len(runs) == 48 and {r.status for r in runs} == {fs.RunStatus.SUCCEEDED}


@pytest.mark.slow
async def test_a_tick_claimed_by_a_killed_process_is_not_lost(
    spawn: Any, pg_store: PostgresStore, tmp_path: Path
) -> None:
    await pg_store.migrate()
    doomed = spawn("claim")

    async def claimed() -> bool:
        return (tmp_path / "claimed").exists()

    await wait_until(claimed, doomed, "the tick was claimed")
    doomed.kill()
    clock = VirtualClock(START + timedelta(hours=1))
    schedule = Schedule([hourly], cron="0 * * * *", partition=by_hour, name="hourly")
    async with fs.Runtime(store=pg_store, clock=clock) as rt:
        async with Scheduler(rt, [schedule], owner="survivor", lease=60) as scheduler:
            await scheduler.wait_idle()
            await clock.advance(seconds=30)
            await scheduler.wait_idle()
            row = await scheduler.store.get("hourly", "20250101T010000Z")
            assert row is not None and row.owner == "doomed"  # its lease still holds
            await clock.advance(seconds=31)  # the sweeper wakes as the lease ends
            await scheduler.wait_idle()
            row = await scheduler.store.get("hourly", "20250101T010000Z")
    assert row is not None and row.owner == "survivor" and row.status is TickStatus.SUCCEEDED
    run = await pg_store.get_run("hourly:20250101T010000Z")
    assert run is not None and run.status is fs.RunStatus.SUCCEEDED
