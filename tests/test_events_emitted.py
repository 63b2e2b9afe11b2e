"""Every event class flowstone declares is emitted somewhere.

The test imports every module of the package, walks the subclasses of ``Event`` declared
in them, and runs scenarios that between them emit each one (through a real runtime, an
event sink and a subscription). A new event class fails it until a scenario here shows
where it is emitted.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from datetime import UTC, datetime

import flowstone as fs
from flowstone.events import AssetEvent, Event
from flowstone.ext import gates
from flowstone.ext.parallel import Branches, branch, parallel
from flowstone.ext.routing import choice, routed_from, router
from flowstone.ext.scatter import ScatterEvent, scatter
from flowstone.ext.schedule import RunRequest, Schedule, ScheduleEvent, Scheduler, sensor
from flowstone.testing import VirtualClock

#: Classes that only group others (never emitted as themselves).
BASES = {Event, AssetEvent, ScatterEvent, gates.GateEvent, ScheduleEvent}


def declared_events() -> set[type[Event]]:
    """Every subclass of ``Event`` defined in a module of the package."""
    for module in pkgutil.walk_packages(fs.__path__, "flowstone."):
        if not module.name.endswith("__main__"):  # that one runs the command line
            importlib.import_module(module.name)
    found: set[type[Event]] = set()
    pending: list[type[Event]] = [Event]
    while pending:
        cls = pending.pop()
        module = sys.modules.get(cls.__module__)
        # (A slots dataclass replaces its class: the first one lingers among the
        # subclasses until collected. The declared one is the one its module holds.)
        if cls.__module__.startswith("flowstone.") and getattr(module, cls.__name__, None) is cls:
            found.add(cls)
        pending += cls.__subclasses__()
    return found


@fs.asset
def numbers() -> list[int]:
    return list(range(6))


@fs.check(asset="numbers")
def six_numbers(numbers: list[int]) -> bool:
    return len(numbers) == 6


@fs.asset
@scatter(items=lambda deps: deps["numbers"], key=str, tolerated_failure=1)
async def halves(item: int) -> float:
    if item == 3:
        raise ValueError("three")
    return item / 2


@fs.asset
def left() -> int:
    return 1


@fs.asset
def right() -> int:
    return 2


@fs.asset
@parallel(branch("left"), branch("right"))
async def both(branches: Branches) -> int:
    return int(sum(branches.values()))


@fs.asset
@router(choice("big", when=lambda deps: deps["both"] > 2), default="small")
async def size(both: int) -> None: ...


@fs.asset
@routed_from("size")
def big(both: int) -> str:
    return "big"


@fs.asset
@routed_from("size")
def small(both: int) -> str:
    return "small"


@fs.asset(retry=fs.Retry(attempts=2, backoff=0))
def flaky() -> int:
    raise ConnectionError("down")


@fs.asset
@gates.approval(timeout=3600)
async def approved(approval: gates.Approval) -> str:
    return approval.by or ""


@fs.asset
@gates.signal(timeout=60, on_timeout="skip")
async def expired(signal: gates.Signal) -> object:
    return signal.payload


@fs.asset
@gates.approval(timeout=3600)
async def cancelled(approval: gates.Approval) -> bool:
    return approval.approved


async def run_gates(rt: fs.Runtime, clock: VirtualClock) -> None:
    """Open three gates (the assets wait), then approve one, let one expire and cancel one."""
    pipeline = fs.Pipeline([approved, expired, cancelled])
    waiting = await rt.materialize(pipeline, run_id="gated")
    assert set(waiting.waiting) == {"approved", "expired", "cancelled"}
    found = {gate.asset: gate for gate in await gates.list_open(runtime=rt, run_id="gated")}
    await gates.approve(found["approved"].gate_id, by="alice", runtime=rt)
    await gates.cancel(found["cancelled"].gate_id, reason="not needed", runtime=rt)
    await clock.advance(seconds=61)
    await rt.resume("gated", pipeline, raise_on_error=False)


polls: list[str | None] = []


@sensor(interval=60)
async def flaky_sensor(cursor: str | None) -> list[RunRequest]:
    polls.append(cursor)
    if len(polls) == 1:
        raise ConnectionError("listing failed")
    return [RunRequest(run_key="once")]


async def run_schedules(rt: fs.Runtime, clock: VirtualClock) -> None:
    """An hourly schedule that fires, then skips a tick while paused, and a sensor
    that fails once and then polls."""
    schedule = Schedule([left], cron="0 * * * *", name="hourly")
    async with Scheduler(rt, [schedule, flaky_sensor], pipeline=[left]) as scheduler:
        await clock.advance(hours=1)
        scheduler.pause("hourly")
        await clock.advance(hours=1)


async def test_every_declared_event_is_emitted_somewhere() -> None:
    sink = fs.MemoryEventSink()
    clock = VirtualClock(datetime(2025, 1, 2, tzinfo=UTC))
    async with fs.Runtime(event_sinks=[sink], clock=clock) as rt:
        slow = rt.subscribe(buffer=1)  # a subscriber that never reads: it loses events
        pipeline = fs.Pipeline(
            [numbers, six_numbers, halves, left, right, both, size, big, small, flaky]
        )
        result = await rt.materialize(pipeline, raise_on_error=False)
        await run_gates(rt, clock)
        await run_schedules(rt, clock)
        slow.close()
        read = [event async for event in slow]
    assert result["halves"] == [0.0, 0.5, 1.0, 2.0, 2.5]
    emitted = {type(e) for e in [*sink.events, *read]}
    declared = declared_events()
    assert BASES <= declared
    missing = {cls.__qualname__ for cls in declared - BASES - emitted}
    assert not missing, f"declared but never emitted: {sorted(missing)}"
    assert not (emitted & BASES)
