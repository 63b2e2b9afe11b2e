"""The runtime's clock: the real one by default, and the virtual clock tests jump with."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import flowstone as fs
from flowstone.protocols import Clock
from flowstone.testing import VirtualClock

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_runtime_uses_the_system_clock_unless_given_one() -> None:
    assert isinstance(fs.Runtime().clock, fs.SystemClock)
    clock = VirtualClock(START)
    assert fs.Runtime(clock=clock).clock is clock
    assert isinstance(clock, Clock) and isinstance(fs.SystemClock(), Clock)


def test_a_clock_without_the_protocol_is_refused_naming_the_option() -> None:
    with pytest.raises(fs.ConfigurationError, match=r"clock= must be a Clock.*now, sleep_until"):
        fs.Runtime(clock=object())  # type: ignore[arg-type]


async def test_the_system_clock_reads_utc_and_returns_for_a_past_deadline() -> None:
    clock = fs.SystemClock()
    now = clock.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    await clock.sleep_until(now - timedelta(days=1))


async def test_advance_wakes_sleepers_in_deadline_order_in_no_real_time() -> None:
    clock = VirtualClock(START)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(name: str, after: timedelta) -> None:
        await clock.sleep_until(START + after)
        woke.append((name, clock.now()))

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "week", timedelta(days=7))
        tg.start_soon(sleeper, "hour", timedelta(hours=1))
        tg.start_soon(sleeper, "month", timedelta(days=30))
        tg.start_soon(sleeper, "day", timedelta(days=1))
        await clock.wait_for_sleepers(4)
        await clock.advance(days=7)
        assert [name for name, _ in woke] == ["hour", "day", "week"]
        assert [at for _, at in woke] == [
            START + timedelta(hours=1),
            START + timedelta(days=1),
            START + timedelta(days=7),
        ]
        assert clock.now() == START + timedelta(days=7)
        assert clock.sleepers == 1
        await clock.advance(days=23)
    assert [name for name, _ in woke][-1] == "month"
    assert time.perf_counter() - began < 5  # a month passed, in well under a second


async def test_a_deadline_set_by_a_woken_task_within_the_span_fires_too() -> None:
    clock = VirtualClock(START)
    seen: list[datetime] = []

    async def twice() -> None:
        await clock.sleep_until(START + timedelta(hours=1))
        seen.append(clock.now())
        await clock.sleep_until(clock.now() + timedelta(hours=1))
        seen.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(twice)
        await clock.wait_for_sleepers()
        await clock.advance(hours=3)
    assert seen == [START + timedelta(hours=1), START + timedelta(hours=2)]
    assert clock.now() == START + timedelta(hours=3)


async def test_a_cancelled_sleeper_is_forgotten() -> None:
    clock = VirtualClock(START)
    with anyio.move_on_after(0):
        await clock.sleep_until(START + timedelta(days=1))
    assert clock.sleepers == 0
    await clock.advance(days=2)


async def test_a_clock_only_moves_forward() -> None:
    with pytest.raises(ValueError, match="forward"):
        await VirtualClock(START).advance(-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualClock(datetime(2026, 1, 1))
