"""Sensors in virtual time: function sensors, cursors, run keys, failures, AssetSensor."""

from __future__ import annotations

import pytest

import flowstone as fs
from flowstone.ext.schedule import (
    AssetSensor,
    RunRequest,
    ScheduleDefinitionError,
    Scheduler,
    SensorFailed,
    SensorPolled,
    SensorResult,
    TickStatus,
    sensor,
)
from flowstone.testing import VirtualClock

seen: list[str | None] = []


@fs.asset(partitions=fs.StaticPartitions(["a", "b", "c"]))
async def report(ctx: fs.Context) -> str | None:
    seen.append(ctx.partition)
    return ctx.partition


@fs.asset
async def upstream() -> int:
    return 1


@fs.asset
async def downstream(ctx: fs.Context) -> str:
    seen.append(ctx.run_id)
    return ctx.run_id


@pytest.fixture(autouse=True)
def _reset() -> None:
    seen.clear()


async def test_a_function_sensor_requests_runs_and_its_cursor_advances(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    cursors: list[str | None] = []

    @sensor(interval=30, pipeline=[report])
    async def new_files(cursor: str | None) -> SensorResult:
        cursors.append(cursor)
        n = int(cursor or 0)
        keys = ["a", "b", "c"]
        return SensorResult(
            run_requests=[RunRequest(partition=keys[n % 3], run_key=f"file-{n % 3}")],
            cursor=str(n + 1),
        )

    async with Scheduler(runtime, [new_files]) as scheduler:
        await clock.advance(seconds=150)  # polls at 0, 30, ..., 150
        history = await scheduler.store.history("new_files", limit=10)
        (status,) = await scheduler.status()
    assert cursors == [None, "1", "2", "3", "4", "5"]
    assert seen == ["a", "b", "c"]  # file-0..2 once each: run keys never run twice
    assert sorted(r.run_id for r in history) == [
        "new_files:file-0",
        "new_files:file-1",
        "new_files:file-2",
    ]
    run = await runtime.store.get_run("new_files:file-1")
    assert run is not None and run.tags["sensor"] == "new_files" and run.tags["run_key"] == "file-1"
    assert status.kind == "sensor" and status.last_status is TickStatus.SUCCEEDED


async def test_a_failing_poll_backs_off_keeps_its_cursor_and_stops_nothing_else(
    clock: VirtualClock,
) -> None:
    sink = fs.MemoryEventSink()
    polls: list[tuple[float, str | None]] = []
    healthy: list[float] = []
    start = clock.now()

    @sensor(interval=10, pipeline=[report])
    async def broken(cursor: str | None) -> SensorResult:
        polls.append(((clock.now() - start).total_seconds(), cursor))
        if len(polls) < 5:
            raise ConnectionError("listing failed")
        return SensorResult(cursor="after")

    @sensor(interval=10, pipeline=[report])
    async def fine(cursor: str | None) -> None:
        healthy.append((clock.now() - start).total_seconds())

    async with fs.Runtime(clock=clock, event_sinks=[sink]) as rt:
        async with Scheduler(rt, [broken, fine], max_backoff=60) as scheduler:
            await clock.advance(seconds=200)
            assert await scheduler.store.cursor("broken") == "after"
    assert [t for t, _ in polls[:6]] == [0, 10, 30, 70, 130, 140]  # 10, 20, 40, 60 (capped)
    assert {c for _, c in polls[:5]} == {None}
    assert healthy == [float(s) for s in range(0, 201, 10)]
    failed = [e for e in sink.events if isinstance(e, SensorFailed)]
    assert [(e.failures, e.retry_in) for e in failed] == [(1, 10), (2, 20), (3, 40), (4, 60)]
    assert "ConnectionError: listing failed" in failed[0].error
    polled = [e for e in sink.events if isinstance(e, SensorPolled) and e.name == "broken"]
    assert polled and polled[0].cursor == "after"


async def test_trigger_polls_a_sensor_now_and_pause_stops_polling(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    polls: list[float] = []
    start = clock.now()

    @sensor(interval=60, pipeline=[report])
    async def slow_poll(cursor: str | None) -> None:
        polls.append((clock.now() - start).total_seconds())

    async with Scheduler(runtime, [slow_poll]) as scheduler:
        await clock.advance(seconds=5)
        assert await scheduler.trigger("slow_poll") is None
        await clock.advance(seconds=5)
        scheduler.pause("slow_poll")
        await clock.advance(seconds=300)
        scheduler.resume("slow_poll")
        await clock.advance(seconds=1)
    assert polls == [0, 5, 310]


async def test_an_asset_sensor_fires_on_materializations_of_another_pipeline(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    watcher = AssetSensor("upstream", pipeline=[downstream], interval=3600)
    async with Scheduler(runtime, [watcher]) as scheduler:
        await clock.advance(seconds=1)  # the first poll: it starts from what is there
        await runtime.materialize([upstream])
        await clock.advance(seconds=1)  # woken by the event in process, not the interval
        assert len(seen) == 1
        await runtime.materialize([upstream])
        await runtime.materialize([upstream])
        await clock.advance(seconds=1)
        history = await scheduler.store.history(watcher.name)
    assert len(seen) == 3 and len(history) == 3  # one run per materialization
    assert all(r.status is TickStatus.SUCCEEDED for r in history)


async def test_an_asset_sensor_sees_records_written_elsewhere_at_its_interval(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    watcher = AssetSensor("upstream", pipeline=[downstream], interval=60, name="watch")
    async with fs.Runtime(store=runtime.store, clock=clock) as other:  # another "process"
        async with Scheduler(runtime, [watcher]):
            await clock.advance(seconds=1)
            await other.materialize([upstream], force=True)
            await clock.advance(seconds=30)
            assert seen == []  # no event reached this runtime: it waits for the next poll
            await clock.advance(seconds=30)
    assert len(seen) == 1


async def test_an_asset_sensor_sees_every_record_of_a_burst_between_polls(
    runtime: fs.Runtime,
) -> None:
    days = fs.DailyPartitions(start="2024-01-01", end="2025-03-01")

    @fs.asset(partitions=days, name="daily_upstream")
    def daily_upstream(ctx: fs.Context) -> str | None:
        return ctx.partition

    watcher = AssetSensor("daily_upstream", pipeline=[downstream])
    watcher.attach(runtime)
    cursor = (await watcher.poll(None)).cursor
    keys = days.keys()
    assert len(keys) > 400  # more than one page of records
    outcome = await runtime.backfill([daily_upstream], partitions=keys, max_concurrent=16)
    assert outcome.succeeded == len(keys)
    result = await watcher.poll(cursor)
    assert sorted(r.partition or "" for r in result.run_requests) == sorted(keys)


def test_sensors_are_checked_at_definition() -> None:
    with pytest.raises(ScheduleDefinitionError, match="async def"):
        sensor(interval=30)(lambda cursor: None)  # type: ignore[arg-type, return-value]

    async def poll(cursor: str | None) -> None: ...

    with pytest.raises(ScheduleDefinitionError, match=r"'poll'.*interval="):
        sensor(interval=0)(poll)
    with pytest.raises(ScheduleDefinitionError, match="asset="):
        AssetSensor("")


def test_a_sensor_without_a_pipeline_needs_the_schedulers(runtime: fs.Runtime) -> None:
    @sensor(interval=30)
    async def orphan(cursor: str | None) -> None: ...

    with pytest.raises(ScheduleDefinitionError, match="'orphan' has no pipeline"):
        Scheduler(runtime, [orphan])
    assert Scheduler(runtime, [orphan], pipeline=[report]).names == ["orphan"]
