"""Properties of every scatter, checked with hypothesis.

Each item is processed exactly once per attempt; succeeded + failed = total; concurrency
never exceeds ``max_concurrent``; the threshold decision is exact at the boundary; results
come back in source order; cancellation leaves no task running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.scatter import Batch, ScatterFailureThresholdExceeded, scatter, scatter_map

SETTINGS = settings(max_examples=150, deadline=None)


async def _yield(times: int) -> None:
    for _ in range(times):
        await anyio.lowlevel.checkpoint()


def _source(kind: str, n: int) -> Any:
    if kind == "list":
        return list(range(n))

    def generator() -> Iterator[int]:
        yield from range(n)

    async def agenerator() -> AsyncIterator[int]:
        for i in range(n):
            yield i

    return generator() if kind == "generator" else agenerator()


@SETTINGS
@given(
    failures=st.lists(st.integers(0, 3), max_size=40),
    attempts=st.integers(1, 3),
    max_concurrent=st.integers(1, 8),
    batched=st.booleans(),
)
def test_each_item_once_per_attempt_and_counts_add_up(
    failures: list[int], attempts: int, max_concurrent: int, batched: bool
) -> None:
    n = len(failures)
    calls = [0] * n

    async def item_fn(ctx: fs.Context, item: Any) -> Any:
        items = item if batched else [item]
        for i in items:
            calls[i] += 1
        await _yield(items[0] % 3)
        results: list[Any] = [ValueError(i) if calls[i] <= failures[i] else i * 10 for i in items]
        if batched:
            return results
        if isinstance(results[0], Exception):
            raise results[0]
        return results[0]

    fn = fs.asset(name="prop")(
        scatter(
            items=lambda deps: range(n),
            max_concurrent=max_concurrent,
            retry=fs.Retry(attempts=attempts, backoff=0),
            tolerated_failure=n,
            batch=Batch(max_items=3, on_item_error="collect_errors") if batched else None,
        )(item_fn)
    )

    async def main() -> fs.MaterializeResult:
        async with fs.Runtime() as runtime:
            return await runtime.materialize([fn])

    result = anyio.run(main)
    expected_calls = [min(f + 1, attempts) for f in failures]
    assert calls == expected_calls
    assert result["prop"] == [i * 10 for i, f in enumerate(failures) if f < attempts]
    summary = result.records["prop"].metadata["scatter"]
    assert summary["total"] == n
    assert summary["succeeded"] + summary["failed"] == n
    assert summary["failed"] == sum(f >= attempts for f in failures)
    assert summary["retried"] == sum(c > 1 for c in expected_calls)


@SETTINGS
@given(
    n=st.integers(0, 60),
    max_concurrent=st.integers(1, 12),
    yields=st.lists(st.integers(1, 4), min_size=1, max_size=10),
    kind=st.sampled_from(["list", "generator", "async"]),
)
def test_concurrency_never_exceeds_max_concurrent(
    n: int, max_concurrent: int, yields: list[int], kind: str
) -> None:
    running = 0
    peak = 0

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await _yield(yields[item % len(yields)])
        running -= 1
        return item

    async def main() -> list[int]:
        return await scatter_map(work, _source(kind, n), max_concurrent=max_concurrent)  # type: ignore[no-any-return]

    assert anyio.run(main) == list(range(n))
    assert peak <= max_concurrent
    if kind == "list":  # every item yields, so the pool fills up
        assert peak == min(n, max_concurrent)


@SETTINGS
@given(
    data=st.data(),
    n=st.integers(1, 60),
    kind=st.sampled_from(["list", "generator", "async"]),
    as_fraction=st.booleans(),
    max_concurrent=st.integers(1, 6),
)
def test_threshold_decision_is_exact_at_the_boundary(
    data: st.DataObject, n: int, kind: str, as_fraction: bool, max_concurrent: int
) -> None:
    failing = data.draw(st.sets(st.integers(0, n - 1)))
    if as_fraction:
        percent = data.draw(st.integers(0, 100))
        tolerated: int | float = float(f"{percent / 100:.2f}")
        exceeded = len(failing) * 100 > percent * n
    else:
        tolerated = data.draw(st.integers(0, n))
        exceeded = len(failing) > tolerated

    async def work(item: int) -> int:
        await anyio.lowlevel.checkpoint()
        if item in failing:
            raise ValueError(item)
        return item

    async def main() -> list[int]:
        return await scatter_map(  # type: ignore[no-any-return]
            work, _source(kind, n), max_concurrent=max_concurrent, tolerated_failure=tolerated
        )

    if exceeded:
        with pytest.raises(ScatterFailureThresholdExceeded):
            anyio.run(main)
    else:
        assert anyio.run(main) == [i for i in range(n) if i not in failing]


@SETTINGS
@given(
    delays=st.lists(st.integers(0, 5), max_size=80),
    max_concurrent=st.integers(1, 10),
    kind=st.sampled_from(["list", "generator", "async"]),
    streaming=st.booleans(),
    batch_size=st.none() | st.integers(1, 4),
)
def test_results_come_back_in_source_order(
    delays: list[int], max_concurrent: int, kind: str, streaming: bool, batch_size: int | None
) -> None:
    n = len(delays)

    async def work(item: Any) -> Any:
        if batch_size is None:
            await _yield(delays[item])
            return -item
        await _yield(delays[item[0]])
        return [-i for i in item]

    async def collect(results: AsyncIterator[tuple[str, int]]) -> list[tuple[str, int]]:
        return [pair async for pair in results]

    async def main() -> Any:
        return await scatter_map(
            work,
            _source(kind, n),
            max_concurrent=max_concurrent,
            gather=collect if streaming else None,
            batch=Batch(max_items=batch_size) if batch_size else None,
        )

    result = anyio.run(main)
    if streaming:
        assert result == [(str(i), -i) for i in range(n)]
    else:
        assert result == [-i for i in range(n)]


@SETTINGS
@given(
    n=st.integers(1, 50),
    max_concurrent=st.integers(1, 10),
    data=st.data(),
    streaming=st.booleans(),
)
def test_cancellation_leaves_no_task_running(
    n: int, max_concurrent: int, data: st.DataObject, streaming: bool
) -> None:
    stop_after = data.draw(st.integers(1, min(n, max_concurrent)))
    started = 0
    exited = 0

    async def work(item: int) -> int:
        nonlocal started, exited
        started += 1
        try:
            await anyio.sleep_forever()
        finally:
            exited += 1
        return item  # pragma: no cover

    async def total(results: AsyncIterator[tuple[str, int]]) -> int:
        return sum([value async for _, value in results])

    async def main() -> set[asyncio.Task[Any]]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: scatter_map(
                    work,
                    range(n),
                    max_concurrent=max_concurrent,
                    gather=total if streaming else None,
                )
            )
            while started < stop_after:
                await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        return asyncio.all_tasks() - {asyncio.current_task()}

    leftover = anyio.run(main)
    assert leftover == set()
    assert started == exited
    assert started <= max_concurrent
