"""``flowstone schedule TARGET``: run schedules and sensors in the foreground.

``TARGET`` is ``module:attr`` (or ``path/file.py:attr``) naming a list of schedules and
sensors (or one). ``--runtime MODULE:ATTR`` gives the runtime (its store: a
``PostgresStore`` makes the schedules durable and safe to run in several processes);
``--list`` prints the next ticks of each instead. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from flowstone.cli import CommandError, load_runtime, load_target

from ._scheduler import Scheduler
from ._sensors import Sensor
from ._spec import Schedule

if TYPE_CHECKING:
    import argparse

__all__ = ["register_schedule_cli"]


def register_schedule_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``flowstone schedule TARGET [--runtime MODULE:ATTR] [--list]`` to the CLI."""
    parser = subparsers.add_parser(
        "schedule",
        help="run schedules and sensors in the foreground (or --list their next ticks)",
        description=(
            "Fire the schedules and poll the sensors TARGET names until SIGTERM or SIGINT. "
            "With a PostgresStore runtime, start as many as you like: each tick fires once."
        ),
    )
    parser.add_argument(
        "target", metavar="TARGET", help="MODULE:ATTR naming a list of schedules and sensors"
    )
    parser.add_argument(
        "--runtime",
        default=None,
        metavar="MODULE:ATTR",
        help="a flowstone Runtime (or a function returning one); default: in memory",
    )
    parser.add_argument("--list", action="store_true", help="print the next ticks and exit")
    parser.add_argument(
        "--count", type=int, default=5, help="how many next ticks --list prints (default 5)"
    )
    parser.set_defaults(func=_schedule)


def targets_of(target: str) -> list[Schedule | Sensor]:
    """The schedules and sensors ``target`` names.

    :raises CommandError: it names something else
    """
    found = load_target(target)
    items = list(found) if isinstance(found, list | tuple) else [found]
    bad = [item for item in items if not isinstance(item, Schedule | Sensor)]
    if bad or not items:
        raise CommandError(
            f"{target} must name a Schedule, a Sensor or a list of them, not {bad[0] if bad else items!r}"
        )
    return items


def listing(targets: list[Schedule | Sensor], now: datetime, count: int) -> str:
    """The lines ``--list`` prints."""
    lines = []
    for item in targets:
        if isinstance(item, Schedule):
            lines.append(f"{item.name}: cron {item.cron!r} in {item.timezone}")
            for tick in item.next_ticks(now, count):
                zoned = tick.astimezone(item.ticks.zone)
                lines.append(f"  {zoned.isoformat()}  ({tick.isoformat()})")
        else:
            lines.append(f"{item.name}: sensor polled every {item.interval:g}s")
    return "\n".join(lines)


async def _schedule(args: argparse.Namespace) -> int:
    import flowstone as fs

    targets = targets_of(args.target)
    if args.list:
        sys.stdout.write(listing(targets, datetime.now(UTC), args.count) + "\n")
        return 0
    runtime = await load_runtime(args.runtime) if args.runtime else fs.Runtime()
    async with runtime:
        scheduler = Scheduler(runtime, targets)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with scheduler:
                sys.stdout.write(f"scheduler started: {', '.join(scheduler.names)}\n")
                sys.stdout.flush()
                async for _ in signals:
                    break
    sys.stdout.write(f"scheduler stopped: {scheduler.fired} run(s) fired\n")
    return 0
