"""A runnable pipeline: a website's daily page views, sessions and top pages.

Run it with ``python examples/pipeline.py [--day 2025-03-04]``. It shows:

- assets that depend on each other by parameter name, async and plain (plain ones run in a
  worker thread), partitioned by day;
- a flaky source retried by ``fs.Retry``, and a resource reached as ``ctx.resources``;
- ``fs.materialize_sync`` for one day from plain synchronous code;
- ``anyio.run`` with an ``fs.Runtime`` for a week's backfill, run twice: the second time
  every day is already current and nothing is computed.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

import flowstone as fs

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AnalyticsAPI",
    "daily_summary",
    "days",
    "main",
    "page_views",
    "pipeline",
    "sessions",
    "top_pages",
]

days = fs.DailyPartitions(start="2025-03-01", end="2025-04-01")
PAGES = ("/", "/pricing", "/docs", "/docs/quickstart", "/blog", "/signup")
SESSION_GAP = 30 * 60  # seconds of inactivity that end a session


class AnalyticsAPI:
    """A pretend analytics API: deterministic data per day; each day's first call times out."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def page_views(self, day: str) -> list[dict[str, Any]]:
        """The day's page views, ordered by time."""
        self.calls[day] += 1
        await anyio.lowlevel.checkpoint()  # a real client would await the network here
        if self.calls[day] == 1:
            raise ConnectionError(f"analytics API timed out for {day}")
        rng = random.Random(day)
        views = [
            {
                "visitor": f"v{rng.randrange(20):02d}",
                "page": rng.choice(PAGES),
                "at": rng.randrange(9 * 3600, 18 * 3600),  # office hours, in seconds
            }
            for _ in range(600)
        ]
        return sorted(views, key=lambda v: (v["at"], v["visitor"]))


@fs.asset(partitions=days, retry=fs.Retry(attempts=3, backoff=0.01, jitter=False))
async def page_views(ctx: fs.Context) -> list[dict[str, Any]]:
    """Raw page views of the day, from the analytics API (retried: the API is flaky)."""
    views: list[dict[str, Any]] = await ctx.resources.analytics.page_views(ctx.partition)
    ctx.add_metadata(rows=len(views))
    return views


@fs.asset(partitions=days)
def sessions(page_views: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Views grouped into sessions per visitor (a plain function: it runs in a worker thread)."""
    by_visitor: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for view in page_views:
        by_visitor[view["visitor"]].append(view)
    result: list[list[dict[str, Any]]] = []
    for views in by_visitor.values():
        current = [views[0]]
        for view in views[1:]:
            if view["at"] - current[-1]["at"] > SESSION_GAP:
                result.append(current)
                current = []
            current.append(view)
        result.append(current)
    return result


@fs.asset(partitions=days)
async def top_pages(page_views: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The three most viewed pages of the day."""
    counts = Counter(view["page"] for view in page_views)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]


@fs.asset(partitions=days)
async def daily_summary(
    ctx: fs.Context,
    sessions: list[list[dict[str, Any]]],
    top_pages: list[tuple[str, int]],
) -> dict[str, Any]:
    """One line's worth of numbers for the day."""
    converted = sum(1 for s in sessions if any(v["page"] == "/signup" for v in s))
    summary = {
        "day": ctx.partition,
        "sessions": len(sessions),
        "conversion": round(converted / len(sessions), 3) if sessions else 0.0,
        "top_page": top_pages[0][0] if top_pages else None,
    }
    ctx.add_metadata(summary)
    return summary


pipeline = fs.Pipeline([page_views, sessions, top_pages, daily_summary], name="web_analytics")


def show(result: fs.MaterializeResult) -> None:
    """Print one line per asset of a run: status, attempts and duration."""
    for name, record in result.records.items():
        how = "reused" if record.reused else f"{record.attempts} attempt(s)"
        print(f"  {name:<14} {record.status.value:<10} {how:<12} {record.duration or 0:.3f}s")


async def backfill_week(start: str) -> tuple[fs.BackfillResult, fs.BackfillResult]:
    """Backfill seven days from ``start`` on one runtime, then once more (all current)."""
    first_day = date.fromisoformat(start)
    week = [(first_day + timedelta(days=i)).isoformat() for i in range(7)]
    async with fs.Runtime(resources={"analytics": AnalyticsAPI()}) as runtime:
        first = await runtime.backfill(pipeline, "daily_summary", partitions=week)
        again = await runtime.backfill(pipeline, "daily_summary", partitions=week)
    return first, again


def main(argv: Sequence[str] | None = None) -> int:
    """Materialize one day, then backfill a week; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--day", default="2025-03-04", help="the day to materialize")
    args = parser.parse_args(argv)

    print(pipeline.graph("text"))
    print()
    # No event loop here: materialize_sync runs one for the call.
    result = fs.materialize_sync(
        pipeline, "daily_summary", partition=args.day, resources={"analytics": AnalyticsAPI()}
    )
    print(f"run {result.run_id}: {result.status.value}")
    show(result)
    print(f"summary: {result['daily_summary']}")
    print()

    first, again = anyio.run(backfill_week, "2025-03-01")
    print(f"backfill: {first.succeeded} succeeded, {first.failed} failed, {first.skipped} skipped")
    print(f"again:    {again.succeeded} succeeded, {again.failed} failed, {again.skipped} skipped")
    return 0 if result.ok and first.ok and again.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
