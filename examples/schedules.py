"""Schedules and a sensor, driven through three virtual days in a fraction of a second.

A nightly revenue schedule at 02:30 in Paris builds the previous day's partition; an
hourly one refreshes a dashboard and skips a tick while its previous run still runs; a
sensor watches an "inbox" for new files and requests one run per file (its run key is the
file name, so a file is never processed twice). Run it with::

    python examples/schedules.py

It runs on ``flowstone.testing.VirtualClock``, so three days pass at once; with the
system clock (drop ``clock=``) the same code fires in real time, as
``flowstone schedule examples/schedules.py:everything`` does in the foreground, and
``flowstone schedule examples/schedules.py:everything --list`` prints the next ticks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio

import flowstone as fs
from flowstone.ext.schedule import RunRequest, Schedule, Scheduler, SensorResult, sensor
from flowstone.testing import VirtualClock

INBOX = ["orders-1.csv", "orders-2.csv", "orders-3.csv"]


@fs.asset(partitions=fs.DailyPartitions(start="2025-01-01"))
async def revenue(ctx: fs.Context) -> float:
    return 100.0 + int((ctx.partition or "0")[-2:])


@fs.asset
async def dashboard() -> str:
    return "refreshed"


@fs.asset(partitions=fs.StaticPartitions(INBOX))
async def imported(ctx: fs.Context) -> str:
    return f"imported {ctx.partition}"


pipeline = fs.Pipeline([revenue, dashboard, imported], name="shop")

nightly = Schedule(
    pipeline,
    select="revenue",
    cron="30 2 * * *",
    timezone="Europe/Paris",
    partition=lambda tick: (tick.date() - timedelta(days=1)).isoformat(),
    catchup=timedelta(hours=6),
    name="nightly-revenue",
)
hourly = Schedule(pipeline, select="dashboard", cron="0 * * * *", overlap="skip", name="dashboard")


@sensor(interval=600, pipeline=pipeline)
async def inbox(cursor: str | None) -> SensorResult:
    """One run per file that arrived since the cursor (the index of the next file)."""
    seen = int(cursor or 0)
    arrived = INBOX[: min(len(INBOX), seen + 1)]  # one new file per poll, for the show
    new = arrived[seen:]
    requests = [RunRequest(select="imported", partition=name, run_key=name) for name in new]
    return SensorResult(run_requests=requests, cursor=str(len(arrived)))


everything = [nightly, hourly, inbox]


def shown(when: datetime | None) -> str:
    return "-" if when is None else f"{when:%Y-%m-%d %H:%M}Z"


async def main() -> None:
    clock = VirtualClock(datetime(2025, 3, 1, tzinfo=UTC))
    async with fs.Runtime(clock=clock) as runtime:
        async with Scheduler(runtime, everything) as scheduler:
            await clock.advance(days=3)
            for status in await scheduler.status():
                print(
                    f"{status.name}: last {shown(status.last_tick)} {status.last_status}, "
                    f"next {shown(status.next_tick)}"
                )
        runs = await runtime.store.list_runs(limit=1000)
    nightly_runs = sorted(
        r.partition or "" for r in runs if r.tags.get("schedule") == "nightly-revenue"
    )
    print(f"nightly revenue built for: {', '.join(nightly_runs)}")
    print(f"dashboard refreshed {sum(r.tags.get('schedule') == 'dashboard' for r in runs)} times")
    files = sorted(r.partition or "" for r in runs if r.tags.get("sensor") == "inbox")
    print(f"files imported once each: {', '.join(files)}")


if __name__ == "__main__":
    anyio.run(main)
