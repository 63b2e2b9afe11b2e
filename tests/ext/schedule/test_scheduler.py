"""The scheduler in virtual time: ticks, partitions, tags, overlap, catch-up and control."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

import flowstone as fs
from flowstone.ext.schedule import (
    MemoryScheduleStore,
    Schedule,
    ScheduleDefinitionError,
    Scheduler,
    TickFired,
    TickRecord,
    TickSkipped,
    TickStatus,
    UnknownScheduleError,
    tick_key,
)
from flowstone.testing import VirtualClock

from .conftest import START

calls: list[str | None] = []


@fs.asset(partitions=fs.HourlyPartitions(start="2024-01-01", fmt="%Y-%m-%dT%H"))
async def hourly(ctx: fs.Context) -> str | None:
    calls.append(ctx.partition)
    return ctx.partition


@fs.asset(partitions=fs.DailyPartitions(start="2024-01-01"))
async def daily(ctx: fs.Context) -> str | None:
    calls.append(ctx.partition)
    return ctx.partition


@fs.asset
async def plain(ctx: fs.Context) -> str:
    calls.append(ctx.run_id.split(":")[0])
    return ctx.run_id


@fs.asset
async def slow(ctx: fs.Context) -> int:
    await ctx.resources.release.wait()
    return 1


@fs.asset
async def broken() -> int:
    raise ValueError("broken")


PIPELINE = fs.Pipeline([hourly], name="hourly-pipeline")


def by_hour(tick: datetime) -> str:
    return tick.strftime("%Y-%m-%dT%H")


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


async def test_an_hourly_schedule_runs_720_times_in_30_virtual_days(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    schedule = Schedule(PIPELINE, cron="0 * * * *", partition=by_hour, name="hourly")
    async with Scheduler(runtime, [schedule]) as scheduler:
        await clock.wait_for_sleepers(1)
        await clock.advance(days=30)  # real time it takes: ``make bench`` (bench_schedule)
    runs = await runtime.store.list_runs(limit=1000)
    assert len(runs) == 720 == scheduler.fired
    expected = [(START + timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(1, 721)]
    assert calls == expected
    assert {run.partition for run in runs} == set(expected)
    run = next(r for r in runs if r.partition == "2025-01-02T03")
    assert run.run_id == "hourly:20250102T030000Z"
    assert run.tags == {"schedule": "hourly", "tick": "2025-01-02T03:00:00+00:00"}
    assert run.status is fs.RunStatus.SUCCEEDED


async def test_a_zoned_daily_schedule_fires_on_local_wall_time_with_its_partition(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    nightly = Schedule(
        [daily],
        select="daily",
        cron="30 2 * * *",
        timezone="Europe/Paris",
        partition=lambda tick: (tick.date() - timedelta(days=1)).isoformat(),
        name="nightly-revenue",
    )
    async with Scheduler(runtime, [nightly]):
        await clock.wait_for_sleepers(1)
        await clock.advance(days=3)
    assert calls == ["2024-12-31", "2025-01-01", "2025-01-02"]
    run = await runtime.store.get_run("nightly-revenue:20250101T013000Z")
    assert run is not None and run.partition == "2024-12-31"


@pytest.mark.parametrize(
    ("zone", "start", "daily", "expected"),
    [
        # spring forward: 02:30 does not exist; fired once at 03:00 (the change)
        (
            "Europe/Paris",
            datetime(2025, 3, 29, tzinfo=UTC),
            "30 2 * * *",
            ["02:30+0100", "03:00+0200"],
        ),
        (
            "America/New_York",
            datetime(2025, 3, 8, 12, tzinfo=UTC),
            "30 2 * * *",
            ["03:00-0400", "02:30-0400"],
        ),
        # fall back: 02:30 / 01:30 happen twice; fired once, at the first
        (
            "Europe/Paris",
            datetime(2025, 10, 25, tzinfo=UTC),
            "30 2 * * *",
            ["02:30+0200", "02:30+0200"],
        ),
        (
            "America/New_York",
            datetime(2025, 11, 1, 12, tzinfo=UTC),
            "30 1 * * *",
            ["01:30-0400", "01:30-0500"],
        ),
    ],
)
async def test_dst_changes_fire_once_per_tick_and_hourly_once_per_real_hour_in_virtual_time(
    zone: str, start: datetime, daily: str, expected: list[str]
) -> None:
    clock = VirtualClock(start)
    async with fs.Runtime(clock=clock) as rt:
        day = Schedule([plain], cron=daily, timezone=zone, name="daily")
        hour = Schedule([plain], cron="30 * * * *", timezone=zone, name="hourly")
        async with Scheduler(rt, [day, hour]) as scheduler:
            await clock.wait_for_sleepers(2)
            await clock.advance(days=2)
            days = await scheduler.store.history("daily")
            hours = await scheduler.store.history("hourly", limit=100)
    shown = [t.tick.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") for t in reversed(days)]
    assert shown == expected
    assert len(hours) == 48  # once per real hour, across the change
    ticks = sorted(t.tick for t in hours)
    assert all(b - a == timedelta(hours=1) for a, b in zip(ticks, ticks[1:], strict=False))
    assert {t.status for t in [*days, *hours]} == {TickStatus.SUCCEEDED}


async def test_a_failed_run_does_not_stop_the_schedule(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    schedule = Schedule([broken], cron="0 * * * *", name="broken")
    async with Scheduler(runtime, [schedule]) as scheduler:
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=3)
        history = await scheduler.store.history("broken")
    assert [t.status for t in history] == [TickStatus.FAILED] * 3


async def test_overlap_skip_records_the_skipped_ticks(clock: VirtualClock) -> None:
    release = anyio.Event()
    sink = fs.MemoryEventSink()
    async with fs.Runtime(clock=clock, resources={"release": release}, event_sinks=[sink]) as rt:
        schedule = Schedule([slow], cron="0 * * * *", overlap="skip", name="slow")
        async with Scheduler(rt, [schedule]) as scheduler:
            await clock.wait_for_sleepers(1)
            await clock.advance(hours=3)
            release.set()
            await clock.advance(hours=1)
            history = await scheduler.store.history("slow")
    statuses = [(t.tick.hour, t.status, t.reason) for t in reversed(history)]
    assert statuses == [
        (1, TickStatus.SUCCEEDED, None),
        (2, TickStatus.SKIPPED, "overlap"),
        (3, TickStatus.SKIPPED, "overlap"),
        (4, TickStatus.SUCCEEDED, None),
    ]
    skipped = [e for e in sink.events if isinstance(e, TickSkipped)]
    assert [(e.reason, e.count) for e in skipped] == [("overlap", 1), ("overlap", 1)]
    assert len([e for e in sink.events if isinstance(e, TickFired)]) == 2


async def test_overlap_buffer_one_keeps_one_waiting_tick(clock: VirtualClock) -> None:
    release = anyio.Event()
    async with fs.Runtime(clock=clock, resources={"release": release}) as rt:
        schedule = Schedule([slow], cron="0 * * * *", overlap="buffer_one", name="slow")
        async with Scheduler(rt, [schedule]) as scheduler:
            await clock.wait_for_sleepers(1)
            await clock.advance(hours=3)
            release.set()
            await clock.advance(minutes=1)
            history = await scheduler.store.history("slow")
    assert [(t.tick.hour, t.status) for t in reversed(history)] == [
        (1, TickStatus.SUCCEEDED),
        (2, TickStatus.SUCCEEDED),  # waited for the first
        (3, TickStatus.SKIPPED),
    ]


async def test_overlap_allow_runs_concurrently(clock: VirtualClock) -> None:
    release = anyio.Event()
    async with fs.Runtime(clock=clock, resources={"release": release}) as rt:
        schedule = Schedule([slow], cron="0 * * * *", overlap="allow", name="slow")
        async with Scheduler(rt, [schedule]) as scheduler:
            await clock.wait_for_sleepers(1)
            await clock.advance(hours=3)
            assert len(await scheduler.store.active("slow", clock.now())) == 3
            release.set()
            await clock.advance(minutes=1)
            history = await scheduler.store.history("slow")
    assert [t.status for t in history] == [TickStatus.SUCCEEDED] * 3


async def test_catch_up_fires_missed_ticks_in_order_and_skips_older_ones(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    store = MemoryScheduleStore()
    schedule = Schedule(
        PIPELINE, cron="0 * * * *", partition=by_hour, catchup=timedelta(hours=6), name="h"
    )
    async with Scheduler(runtime, [schedule], store=store):
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=2)
    # down for a day
    await clock.advance(hours=24)
    sink = fs.MemoryEventSink()
    runtime.add_event_sink(sink)
    async with Scheduler(runtime, [schedule], store=store):
        await clock.advance(0)  # the catch-up runs need no time: let them all end
    fired = calls[2:]
    assert fired == [(START + timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(20, 27)]
    history = await store.history("h", limit=100)
    too_old = [t for t in history if t.reason == "too_old"]
    assert len(too_old) == 17  # hours 3..19
    assert [(e.reason, e.count) for e in sink.events if isinstance(e, TickSkipped)] == [
        ("too_old", 17)
    ]


async def test_catchup_none_never_catches_up_nor_goes_before_registration(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    store = MemoryScheduleStore()
    await clock.advance(hours=5)  # before the schedule was ever registered: never fired
    schedule = Schedule(PIPELINE, cron="0 * * * *", partition=by_hour, name="h")
    async with Scheduler(runtime, [schedule], store=store):
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=1)
    await clock.advance(hours=3)
    async with Scheduler(runtime, [schedule], store=store):
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=1)
    # 07:00 and 08:00 were missed; 09:00 is due as the second scheduler starts
    assert calls == ["2025-01-01T06", "2025-01-01T09", "2025-01-01T10"]
    assert [t.reason for t in await store.history("h")].count("too_old") == 2


async def test_pause_resume_trigger_and_status(runtime: fs.Runtime, clock: VirtualClock) -> None:
    schedule = Schedule(PIPELINE, cron="0 * * * *", partition=by_hour, name="h")
    async with Scheduler(runtime, [schedule]) as scheduler:
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=1)
        scheduler.pause("h")
        await clock.advance(hours=2)
        (paused,) = await scheduler.status()
        assert paused.paused and paused.last_status is TickStatus.SKIPPED
        assert paused.skipped == 2
        scheduler.resume("h")
        await clock.advance(hours=1)
        await clock.advance(minutes=10)
        run_id = await scheduler.trigger("h")
        assert run_id == "h:20250101T041000Z"
        await clock.advance(0)
        (status,) = await scheduler.status()
        with pytest.raises(UnknownScheduleError):
            scheduler.pause("nope")
    assert calls == ["2025-01-01T01", "2025-01-01T04", "2025-01-01T04"]
    assert status.name == "h" and not status.paused
    assert status.last_run_id == run_id and status.last_status is TickStatus.SUCCEEDED
    assert status.next_tick == datetime(2025, 1, 1, 5, tzinfo=UTC)
    run = await runtime.store.get_run(run_id)
    assert run is not None and run.tags["trigger"] == "manual"


async def test_schedules_can_be_added_and_removed_while_running(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    first = Schedule([plain], cron="0 * * * *", name="first")
    second = Schedule([plain], cron="30 * * * *", name="second")
    async with Scheduler(runtime, [first]) as scheduler:
        await clock.wait_for_sleepers(1)
        await clock.advance(hours=1)
        scheduler.add(second)
        with pytest.raises(ScheduleDefinitionError, match="two schedules"):
            scheduler.add(second)
        await clock.advance(hours=1)
        scheduler.remove("first")
        assert scheduler.names == ["second"]
        await clock.advance(hours=2)
    assert calls == ["first", "second", "first", "second", "second"]


async def test_a_claim_whose_holder_died_is_taken_over_with_the_same_run_id(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    store = MemoryScheduleStore()
    schedule = Schedule(PIPELINE, cron="0 * * * *", partition=by_hour, name="h")
    await store.register("h", START)
    tick = START + timedelta(hours=1)
    await clock.advance(hours=1)
    claim = TickRecord(
        name="h",
        key=tick_key(tick),
        tick=tick,
        run_id=f"h:{tick_key(tick)}",
        status=TickStatus.CLAIMED,
        partition=by_hour(tick),
        tags={"schedule": "h", "tick": tick.isoformat()},
        owner="dead",
        lease_until=tick + timedelta(seconds=60),
    )
    assert await store.claim(claim)  # and then its scheduler died
    async with Scheduler(runtime, [schedule], store=store, owner="alive", lease=60):
        await clock.wait_for_sleepers(1)
        assert calls == []  # the tick is claimed by another, whose lease still holds
        await clock.advance(seconds=61)
    assert calls == ["2025-01-01T01"]
    row = await store.get("h", "20250101T010000Z")
    assert row is not None and row.owner == "alive" and row.status is TickStatus.SUCCEEDED


async def test_two_schedulers_on_one_store_fire_each_tick_once(
    runtime: fs.Runtime, clock: VirtualClock
) -> None:
    store = MemoryScheduleStore()
    schedule = Schedule(PIPELINE, cron="0 * * * *", partition=by_hour, name="h", overlap="allow")
    async with (
        Scheduler(runtime, [schedule], store=store, owner="a"),
        Scheduler(runtime, [schedule], store=store, owner="b"),
    ):
        await clock.wait_for_sleepers(2)
        await clock.advance(hours=24)
    assert len(calls) == 24 == len(set(calls))


def test_a_scheduler_refuses_duplicate_names_and_bad_targets(runtime: fs.Runtime) -> None:
    schedule = Schedule(PIPELINE, cron="0 * * * *", name="h")
    with pytest.raises(ScheduleDefinitionError, match="two schedules"):
        Scheduler(runtime, [schedule, schedule])
    with pytest.raises(ScheduleDefinitionError, match="neither"):
        Scheduler(runtime, [object()])  # type: ignore[list-item]
