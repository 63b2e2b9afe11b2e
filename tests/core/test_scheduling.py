"""The ready queue: concurrency of waiting assets, fairness of ones that never suspend."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.testing import assert_succeeded


def _fan_out(width: int, body: Any) -> list[fs.AssetDef[..., Any]]:
    @fs.asset(name="source")
    async def source() -> int:
        return 1

    children = [
        fs.asset(name=f"child_{i}", deps={"source": "source"})(body(i)) for i in range(width)
    ]
    return [source, *children]


async def test_assets_that_wait_all_run_at_once(flowstone_runtime: fs.Runtime) -> None:
    # Every child waits until all of them have started: only a run that has every one of
    # them in flight at the same time gets past the barrier.
    width = 300
    started = 0
    everyone = anyio.Event()

    def body(i: int) -> Any:
        async def child(source: int) -> int:
            nonlocal started
            started += 1
            if started == width:
                everyone.set()
            await everyone.wait()
            return source + i

        return child

    with anyio.fail_after(10):
        result = await flowstone_runtime.materialize(_fan_out(width, body))
    assert_succeeded(result, *(f"child_{i}" for i in range(width)))
    assert result["child_299"] == 300


async def test_a_long_run_of_assets_that_never_suspend_lets_other_tasks_run(
    flowstone_runtime: fs.Runtime,
) -> None:
    assets: list[fs.AssetDef[..., Any]] = []
    previous: str | None = None
    length = 640
    for i in range(length):
        name = f"step_{i}"
        if previous is None:

            async def first() -> int:
                return 1

            assets.append(fs.asset(name=name)(first))
        else:

            async def step(x: int) -> int:
                return x + 1

            assets.append(fs.asset(name=name, deps={"x": previous})(step))
        previous = name
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()  # let the ticker start
        before = ticks
        result = await flowstone_runtime.materialize(assets)
        during = ticks - before
        done = True
    assert previous is not None and result[previous] == length
    assert during >= 10  # the run gave the loop a turn every few dozen assets


async def test_a_cancelled_fan_out_reports_unstarted_assets_cancelled(
    flowstone_runtime: fs.Runtime,
) -> None:
    width = 100
    first = anyio.Event()

    def body(i: int) -> Any:
        async def child(source: int) -> int:
            first.set()
            await anyio.sleep_forever()
            return i

        return child

    assets = _fan_out(width, body)
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            await flowstone_runtime.materialize(assets)

        tg.start_soon(run)
        await first.wait()
        tg.cancel_scope.cancel()
    records = [await flowstone_runtime.store.latest(f"child_{i}", None) for i in range(width)]
    assert all(r is None or r.status is not fs.Status.SUCCEEDED for r in records)


@pytest.mark.parametrize("limit", [1, 2, 7])
async def test_max_concurrent_holds_with_workers(flowstone_runtime: fs.Runtime, limit: int) -> None:
    width = 40
    running = peak = 0

    def body(i: int) -> Any:
        async def child(source: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.lowlevel.checkpoint()
            running -= 1
            return i

        return child

    result = await flowstone_runtime.materialize(_fan_out(width, body), max_concurrent=limit)
    assert result.ok
    assert 1 <= peak <= limit


@settings(max_examples=40, deadline=None)
@given(
    edges=st.lists(st.tuples(st.integers(0, 24), st.integers(0, 24)), max_size=60),
    suspending=st.sets(st.integers(0, 24)),
)
def test_every_asset_runs_once_after_its_dependencies(
    edges: list[tuple[int, int]], suspending: set[int]
) -> None:
    deps: dict[int, set[int]] = {i: set() for i in range(25)}
    for a, b in edges:
        low, high = sorted((a, b))
        if low != high:
            deps[high].add(low)  # edges go from lower to higher: no cycles
    order: list[int] = []

    def make(i: int) -> fs.AssetDef[..., Any]:
        async def node() -> int:
            if i in suspending:
                await anyio.lowlevel.checkpoint()
            assert deps[i] <= set(order), f"n{i} ran before its dependencies"
            order.append(i)
            return i

        return fs.asset(name=f"n{i}", deps=[f"n{d}" for d in deps[i]])(node)

    async def go() -> fs.MaterializeResult:
        async with fs.Runtime() as rt:
            return await rt.materialize([make(i) for i in range(25)])

    result = anyio.run(go)
    assert result.ok
    assert sorted(order) == list(range(25))


_set_by_asset: ContextVar[str] = ContextVar("set_by_asset", default="unset")


async def test_what_an_asset_sets_in_a_context_variable_stays_out_of_the_caller(
    flowstone_runtime: fs.Runtime,
) -> None:
    # A lone ready asset runs in a worker task, not in the caller's task.
    caller = anyio.get_current_task()
    seen: list[anyio.TaskInfo] = []

    @fs.asset
    async def lone() -> int:
        _set_by_asset.set("set")
        seen.append(anyio.get_current_task())
        return 1

    result = await flowstone_runtime.materialize([lone])
    assert_succeeded(result, "lone")
    assert _set_by_asset.get() == "unset"
    assert seen and seen[0].id != caller.id
