"""Scheduler benchmarks: the cost of a tick beside a bare ``materialize``, and claims on
PostgreSQL from two processes.

Workloads:

- **scheduled tick** — an hourly schedule driven through 500 ticks on a virtual clock,
  in memory: real time per tick, from the clock waking the schedule to its run ended
  (claim, tags, run, outcome recorded), beside a bare ``runtime.materialize`` of the same
  asset. The note gives the scheduler's own overhead per tick, which includes moving the
  virtual clock;
- **fire → run started** — per tick, real time from the tick's ``TickFired`` event to the
  run's ``RunStarted`` (what the scheduler adds before the run begins, claim excluded);
- **ticks claimed, two processes** — two OS processes claim the same 2,000 ticks of one
  schedule in ``PostgresStore``'s schedule store as fast as they can: claims won per second
  in total (each tick once), beside one process claiming 2,000 ticks alone.

The PostgreSQL part needs a server: ``FLOWSTONE_TEST_PG_DSN`` (default: the local test
server). Each run uses its own schema and drops it at the end.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from time import perf_counter
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.streams.text import TextReceiveStream

import flowstone as fs
from flowstone.events import Event, RunStarted
from flowstone.ext.schedule import Schedule, Scheduler, TickFired, TickRecord, TickStatus, tick_key
from flowstone.testing import VirtualClock

if TYPE_CHECKING:
    from . import Report

__all__ = ["run"]

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"
START = datetime(2025, 1, 1, tzinfo=UTC)


@fs.asset
async def value() -> int:
    return 1


class Stamps:
    """Real times of each run's ``TickFired`` and ``RunStarted``."""

    def __init__(self) -> None:
        self.fired: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        if isinstance(event, TickFired):
            self.fired[event.run_id] = perf_counter()
        elif isinstance(event, RunStarted):
            self.started.setdefault(event.run_id, perf_counter())


async def tick_costs(ticks: int) -> tuple[float, float, float]:
    """(µs per scheduled tick, µs per bare materialize, µs from fire to run started)."""
    pipeline = fs.Pipeline([value], name="bench")
    async with fs.Runtime() as rt:
        started = perf_counter()
        for i in range(ticks):
            await rt.materialize(pipeline, run_id=f"bare-{i}")
        bare = (perf_counter() - started) / ticks * 1e6
    stamps = Stamps()
    clock = VirtualClock(START)
    async with fs.Runtime(clock=clock, event_sinks=[stamps]) as rt:
        schedule = Schedule(pipeline, cron="0 * * * *", name="bench")
        async with Scheduler(rt, [schedule]) as scheduler:
            await clock.wait_for_sleepers(1)
            started = perf_counter()
            await clock.advance(hours=ticks)
            per_tick = (perf_counter() - started) / ticks * 1e6
            assert scheduler.fired == ticks
    gaps = [stamps.started[r] - t for r, t in stamps.fired.items() if r in stamps.started]
    return per_tick, bare, sum(gaps) / len(gaps) * 1e6


def _record(i: int, owner: str) -> TickRecord:
    tick = START + timedelta(minutes=i)
    return TickRecord(
        name="bench",
        key=tick_key(tick),
        tick=tick,
        run_id=f"bench:{tick_key(tick)}",
        status=TickStatus.CLAIMED,
        owner=owner,
        lease_until=tick + timedelta(minutes=1),
    )


async def claim_all(dsn: str, schema: str, count: int, wait: bool) -> dict[str, float]:
    """Claim ticks 0..count-1: how many won, in how long. With ``wait`` (one process of
    several), print ``ready`` once connected and start on a line read from stdin."""
    from flowstone.ext.postgres import PostgresStore

    async with PostgresStore(dsn, schema=schema) as pg:
        store = pg.schedule_store()
        await store.register("bench", START)
        if wait:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            await anyio.to_thread.run_sync(sys.stdin.readline)
        owner = f"p{os.getpid()}"
        started = perf_counter()
        won = 0
        for i in range(count):
            won += await store.claim(_record(i, owner))
        return {"won": won, "seconds": perf_counter() - started}


async def claims_per_second(dsn: str, count: int) -> tuple[float, float]:
    """(claims/s with two processes racing, claims/s with one alone)."""
    from flowstone.ext.postgres import PostgresStore

    schema = f"bench_sched_{uuid.uuid4().hex[:8]}"
    alone = f"{schema}_alone"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, "-m", "benchmarks.bench_schedule", dsn, schema, str(count)]
    try:
        async with PostgresStore(dsn, schema=schema) as pg:
            await pg.migrate()
        procs = [await anyio.open_process(args, env=env) for _ in range(2)]
        streams = [TextReceiveStream(p.stdout) for p in procs if p.stdout is not None]
        for stream in streams:  # both connected before either starts
            assert "ready" in await stream.receive()
        for proc in procs:
            assert proc.stdin is not None
            await proc.stdin.send(b"go\n")
        results = []
        for proc, stream in zip(procs, streams, strict=True):
            text = "".join([chunk async for chunk in stream])
            await proc.wait()
            results.append(json.loads(text.strip().splitlines()[-1]))
        assert sum(r["won"] for r in results) == count, results
        racing = count / max(r["seconds"] for r in results)
        single = await claim_all(dsn, alone, count, False)
        return racing, count / single["seconds"]
    finally:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            for name in (schema, alone):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


async def run(report: Report) -> None:
    """Report the scheduler's rows."""
    ticks = 200 if report.quick else 500
    per_tick, bare, fire_to_start = await tick_costs(ticks)
    report(
        "scheduled tick (memory, virtual clock)",
        per_tick,
        bare,
        "us",
        note=(
            f"bare materialize baseline; scheduler overhead {per_tick - bare:.0f} us/tick; "
            f"30 days of an hourly schedule (720 ticks) take {per_tick * 720 / 1e6:.2f} s"
        ),
    )
    report("fire -> run started", fire_to_start, float("nan"), "us", note="TickFired to RunStarted")
    dsn = os.environ.get("FLOWSTONE_TEST_PG_DSN", DEFAULT_DSN)
    count = 1000 if report.quick else 2000
    racing, single = await claims_per_second(dsn, count)
    report(
        "ticks claimed, 2 processes (PostgreSQL)",
        racing,
        single,
        "claims/s",
        note=f"{count} ticks, each won once; baseline: one process alone",
    )


if __name__ == "__main__":  # one claiming process of claims_per_second
    dsn, schema, count = sys.argv[1:4]
    result = anyio.run(claim_all, dsn, schema, int(count), True)
    sys.stdout.write(json.dumps(result) + "\n")
