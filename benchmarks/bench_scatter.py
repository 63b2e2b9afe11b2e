"""Scatter benchmarks W3, W4 and W6, each beside a raw anyio baseline measured in the same run.

The baseline is the pattern the engine is built on, written by hand: a fixed pool of
``max_concurrent`` worker tasks in one anyio task group pulling from one shared iterator.

* W3: 10,000 items that each ``await anyio.sleep(0.001)``, ``max_concurrent=100`` — wall
  seconds (target: within 1.3x of the baseline).
* W4: 100,000 trivial items, ``max_concurrent=1000`` — wall seconds (target: within 5x),
  through ``scatter_map`` and through a pipeline asset (which also builds a context per item).
* W6: 1,000,000 items from a streaming ``ItemReader`` with a summing ``gather=`` — items per
  second (target: at least 200k) and peak RSS growth (target: under 64 MB), each measured
  in a fresh subprocess so earlier workloads do not inflate the peak.

Run it alone with ``python benchmarks/bench_scatter.py``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio

import flowstone as fs
from flowstone.ext.scatter import scatter, scatter_map
from flowstone.protocols import ItemPage

__all__ = ["run"]

Report = Callable[..., None]

W3_ITEMS, W3_CONCURRENCY = 10_000, 100
W4_ITEMS, W4_CONCURRENCY = 100_000, 1000
W6_ITEMS, W6_CONCURRENCY, W6_PAGE = 1_000_000, 100, 1000
REPEATS = 3


# -- the raw baseline ------------------------------------------------------------------


async def pool_baseline(
    items: Iterable[Any], fn: Callable[[Any], Awaitable[Any]], max_concurrent: int
) -> list[Any]:
    """A fixed pool of workers pulling from one shared iterator, appending results."""
    iterator = iter(items)
    results: list[Any] = []

    async def worker() -> None:
        for item in iterator:
            results.append(await fn(item))  # noqa: PERF401 - the pattern as written by hand

    async with anyio.create_task_group() as tg:
        for _ in range(max_concurrent):
            tg.start_soon(worker)
    return results


async def _timed(make: Callable[[], Awaitable[Any]], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        await make()
        best = min(best, time.perf_counter() - started)
    return best


async def _sleepy(item: int) -> int:
    await anyio.sleep(0.001)
    return item


async def _trivial(item: int) -> int:
    return item


# -- W6: streaming reader, summing gather, in a subprocess ----------------------------------


class RangeReader:
    """An :class:`~flowstone.protocols.ItemReader` over ``range(n)``, page by page."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
        start = int(cursor) if cursor else 0
        end = min(self.n, start + limit)
        return ItemPage(list(range(start, end)), str(end) if end < self.n else None)

    async def count(self) -> int | None:
        return None


async def _summing_gather(results: AsyncIterator[tuple[str, int]]) -> int:
    total = 0
    async for _, value in results:
        total += value
    return total


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _w6_child(mode: str) -> dict[str, float]:
    reader = RangeReader(W6_ITEMS)
    start_rss = _status_mb("VmRSS")
    started = time.perf_counter()
    if mode == "scatter":
        total = await scatter_map(
            _trivial,
            reader,
            max_concurrent=W6_CONCURRENCY,
            gather=_summing_gather,
            page_size=W6_PAGE,
        )
    else:
        # Raw: the reader's pages flattened by one async generator that the pool shares
        # (under a lock, as an async generator cannot be advanced by two tasks at once).
        async def flatten() -> AsyncIterator[int]:
            cursor: str | None = None
            while True:
                page = await reader.read_page(cursor, W6_PAGE)
                for item in page.items:
                    yield item
                if page.cursor is None:
                    return
                cursor = page.cursor

        source = flatten()
        lock = anyio.Lock()
        total = 0

        async def worker() -> None:
            nonlocal total
            while True:
                async with lock:
                    try:
                        item = await source.__anext__()
                    except StopAsyncIteration:
                        return
                total += await _trivial(item)

        async with anyio.create_task_group() as tg:
            for _ in range(W6_CONCURRENCY):
                tg.start_soon(worker)
    elapsed = time.perf_counter() - started
    if total != W6_ITEMS * (W6_ITEMS - 1) // 2:
        raise AssertionError(f"wrong sum {total}")
    return {
        "items_per_s": W6_ITEMS / elapsed,
        "rss_growth_mb": _status_mb("VmHWM") - start_rss,
    }


async def _w6(mode: str) -> dict[str, float]:
    result = await anyio.run_process([sys.executable, __file__, "w6", mode], check=True)
    return json.loads(result.stdout.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the suite ---------------------------------------------------------------------------


async def run(report: Report) -> None:
    """Run W3, W4 and W6 and record each beside its baseline with ``report``."""
    repeats = 1 if getattr(report, "quick", False) else REPEATS
    base3 = await _timed(lambda: pool_baseline(range(W3_ITEMS), _sleepy, W3_CONCURRENCY), repeats)
    ours3 = await _timed(
        lambda: scatter_map(_sleepy, range(W3_ITEMS), max_concurrent=W3_CONCURRENCY), repeats
    )
    report(
        "scatter W3: 10k items x sleep(1 ms), max_concurrent=100",
        ours3,
        base3,
        "s",
        f"{ours3 / base3:.2f}x the baseline (target <= 1.3x)",
    )

    base4 = await _timed(lambda: pool_baseline(range(W4_ITEMS), _trivial, W4_CONCURRENCY), repeats)
    ours4 = await _timed(
        lambda: scatter_map(_trivial, range(W4_ITEMS), max_concurrent=W4_CONCURRENCY), repeats
    )
    report(
        "scatter W4: 100k trivial items, max_concurrent=1000 (scatter_map)",
        ours4,
        base4,
        "s",
        f"{ours4 / base4:.2f}x the baseline (target <= 5x)",
    )

    @fs.asset
    @scatter(items=lambda deps: range(W4_ITEMS), max_concurrent=W4_CONCURRENCY)
    async def w4(ctx: fs.Context, item: int) -> int:
        return item

    async with fs.Runtime() as runtime:
        pipe4 = await _timed(lambda: runtime.materialize([w4]), repeats)
    report(
        "scatter W4: 100k trivial items, max_concurrent=1000 (pipeline asset)",
        pipe4,
        base4,
        "s",
        f"{pipe4 / base4:.2f}x the baseline; includes a context per item and the run's records",
    )

    ours6 = await _w6("scatter")
    base6 = await _w6("baseline")
    report(
        "scatter W6: 1M items, streaming reader, summing gather - throughput",
        ours6["items_per_s"],
        base6["items_per_s"],
        "items/s",
        "target >= 200k items/s; baseline pool shares an async generator under a lock",
    )
    report(
        "scatter W6: 1M items, streaming reader, summing gather - peak RSS growth",
        ours6["rss_growth_mb"],
        base6["rss_growth_mb"],
        "MB",
        "target < 64 MB; VmHWM in a fresh process",
    )


def _print_row(name: str, value: float, baseline: float, unit: str, note: str = "") -> None:
    print(f"{name}: {value:,.3f} {unit} (baseline {baseline:,.3f} {unit}) {note}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "w6":
        print(json.dumps(anyio.run(_w6_child, sys.argv[2])))
    else:
        anyio.run(run, _print_row)
