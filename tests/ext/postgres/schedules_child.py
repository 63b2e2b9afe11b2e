"""A process running an hourly schedule on a PostgresStore, in virtual time.

``python schedules_child.py ROLE --dsn … --schema … [--folder F] [--hours N]``

- ``run``: write ``F/ready-<pid>``, wait for ``F/go``, then drive a scheduler through
  ``N`` virtual hours from 2025-01-01 (every process shares that start) and print
  ``{"fired": count}``;
- ``claim``: claim the tick of 01:00 for a scheduler of its own, write ``F/claimed``,
  and wait to be killed (it never fires the run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.schedule import (
    Schedule,
    Scheduler,
    TickRecord,
    TickStatus,
    schedule_store_for,
    tick_key,
)
from flowstone.testing import VirtualClock

START = datetime(2025, 1, 1, tzinfo=UTC)

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run", "claim"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--folder", required=True)
parser.add_argument("--hours", type=int, default=48)
ARGS = parser.parse_args()


@fs.asset(partitions=fs.HourlyPartitions(start="2024-01-01", fmt="%Y-%m-%dT%H"))
async def hourly(ctx: fs.Context) -> str | None:
    return ctx.partition


def schedule() -> Schedule:
    return Schedule(
        [hourly],
        cron="0 * * * *",
        partition=lambda tick: tick.strftime("%Y-%m-%dT%H"),
        overlap="allow",
        name="hourly",
    )


async def run(folder: Path) -> None:
    clock = VirtualClock(START)
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema)
    async with fs.Runtime(store=store, clock=clock) as rt:
        # Each process has a virtual clock of its own: leases long enough that no process
        # ahead of another takes over a claim still being run.
        scheduler = Scheduler(rt, [schedule()], lease=30 * 24 * 3600)
        async with scheduler:
            (folder / f"ready-{os.getpid()}").touch()
            while not (folder / "go").exists():
                await anyio.sleep(0.01)
            for _ in range(ARGS.hours):
                await scheduler.wait_idle()
                await clock.advance(hours=1)
            await scheduler.wait_idle()
    sys.stdout.write(json.dumps({"fired": scheduler.fired}) + "\n")


async def claim(folder: Path) -> None:
    clock = VirtualClock(START + timedelta(hours=1))
    async with fs.Runtime(store=PostgresStore(ARGS.dsn, schema=ARGS.schema), clock=clock) as rt:
        store = schedule_store_for(rt)
        tick = START + timedelta(hours=1)
        await store.register("hourly", START)
        claim = TickRecord(
            name="hourly",
            key=tick_key(tick),
            tick=tick,
            run_id=f"hourly:{tick_key(tick)}",
            status=TickStatus.CLAIMED,
            partition=tick.strftime("%Y-%m-%dT%H"),
            tags={"schedule": "hourly", "tick": tick.isoformat()},
            owner="doomed",
            lease_until=clock.now() + timedelta(seconds=60),
        )
        assert await store.claim(claim)
        (folder / "claimed").touch()
        await anyio.sleep_forever()


anyio.run(run if ARGS.role == "run" else claim, Path(ARGS.folder))
