"""Scatter assets on the barrier engine, with their items in each kind of barrier store."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    BarrierCancelledError,
    BarrierLeaseLostError,
    BarrierScatterCoordinator,
    Batch,
    DuplicateScatterKeyError,
    MemoryBarrierStore,
    ScatterFailureThresholdExceeded,
    barrier_id_of,
    scatter,
)
from flowstone.protocols import ItemPage, ScatterItemResult, SourceCheckpoint
from flowstone.testing import VirtualClock

from .conftest import Backend


def runtime(backend: Backend, **options: Any) -> fs.Runtime:
    coordinator = BarrierScatterCoordinator(backend.store, **options)
    return fs.Runtime(coordinators={"scatter": coordinator})


async def test_results_come_back_in_source_order(backend: Backend) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(250), max_concurrent=7, key=lambda n: f"n{n}")
    async def squares(ctx: fs.Context, item: int) -> dict[str, Any]:
        await anyio.sleep(0)
        return {"key": ctx.scatter_key, "square": item * item}

    async with runtime(backend) as rt:
        result = await rt.materialize([squares], run_id="r")
    assert result["squares"] == [{"key": f"n{i}", "square": i * i} for i in range(250)]
    summary = result.records["squares"].metadata["scatter"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (250, 250, 0)
    state = await backend.store.state(barrier_id_of("r", "squares", None))
    assert state.done and state.succeeded == 250


async def test_a_gather_function_gets_the_keyed_results(backend: Backend) -> None:
    async def total(results: Any) -> int:
        return sum([value async for _, value in results])

    @fs.asset
    @scatter(items=lambda deps: [1, 2, 3, 4], gather=total)
    async def summed(item: int) -> int:
        return item * 10

    async with runtime(backend) as rt:
        assert (await rt.materialize([summed]))["summed"] == 100


async def test_a_rerun_runs_only_the_failed_items_again(backend: Backend) -> None:
    runs: list[int] = []
    broken = {3, 8}

    @fs.asset
    @scatter(items=lambda deps: range(12), max_concurrent=3)
    async def flaky(item: int) -> int:
        runs.append(item)
        if item in broken:
            raise RuntimeError("not yet")
        return item

    async with runtime(backend) as rt:
        with pytest.raises(ScatterFailureThresholdExceeded) as caught:
            await rt.materialize([flaky], run_id="again")
        assert caught.value.asset == "flaky"
        assert ("3", "RuntimeError: not yet") in caught.value.first_errors
        first = set(runs)
        broken.clear()
        runs.clear()
        result = await rt.materialize([flaky], run_id="again")
    assert result["flaky"] == list(range(12))
    assert set(runs) <= {3, 8} | (set(range(12)) - first)  # succeeded items did not run again
    assert {3, 8} <= set(runs) or not {3, 8} <= first


async def test_reading_resumes_from_the_stored_checkpoint(backend: Backend) -> None:
    pages: list[str | None] = []

    class Numbers:
        async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
            pages.append(cursor)
            start = int(cursor or 0)
            end = min(start + limit, 9)
            return ItemPage(list(range(start, end)), str(end) if end < 9 else None)

        async def count(self) -> int | None:
            return None

    store = backend.store
    barrier = barrier_id_of("c", "numbers", None)
    await store.open_barrier(
        barrier, run_id="c", asset="numbers", partition=None, tolerated_failure=0
    )
    await store.add_items(barrier, [(i, str(i), i) for i in range(4)], SourceCheckpoint(4, "4"))

    @fs.asset
    @scatter(reader=Numbers(), page_size=4)
    async def numbers(item: int) -> int:
        return item + 100

    async with runtime(backend) as rt:
        result = await rt.materialize([numbers], run_id="c")
    assert result["numbers"] == [i + 100 for i in range(9)]
    assert pages == ["4", "8"]  # the first page came from the checkpoint


async def test_a_reader_is_read_in_the_asset_s_pages(backend: Backend) -> None:
    # Claims are smaller (twice max_concurrent), but a reader's page goes in whole, with
    # its cursor as the checkpoint.
    pages: list[str | None] = []

    class Numbers:
        async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
            pages.append(cursor)
            start = int(cursor or 0)
            end = min(start + limit, 25)
            return ItemPage(list(range(start, end)), str(end) if end < 25 else None)

        async def count(self) -> int | None:
            return None

    @fs.asset
    @scatter(reader=Numbers(), page_size=10, max_concurrent=2)
    async def paged(item: int) -> int:
        return item

    async with runtime(backend) as rt:
        result = await rt.materialize([paged], run_id="p")
    assert result["paged"] == list(range(25))
    assert pages == [None, "10", "20"]
    assert await backend.store.checkpoint(barrier_id_of("p", "paged", None)) == SourceCheckpoint(
        25, None, exhausted=True
    )


async def test_a_duplicate_in_the_first_page_fails_before_any_item_runs(
    backend: Backend,
) -> None:
    runs: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(30), key=lambda n: f"k{n % 9}", max_concurrent=1)
    async def clashing(item: int) -> int:
        runs.append(item)
        return item

    async with runtime(backend) as rt:
        result = await rt.materialize([clashing], raise_on_error=False)
    error = result.outcomes["clashing"].error
    assert isinstance(error, fs.AssetExecutionError)
    assert isinstance(error.__cause__, DuplicateScatterKeyError)
    assert runs == []  # the first page of page_size=1000 holds the duplicate


async def test_changed_code_starts_the_barrier_over(backend: Backend) -> None:
    runs: list[int] = []

    def version(code_version: str, factor: int) -> fs.AssetDef:
        @fs.asset(name="scaled", code_version=code_version)
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def scaled(item: int) -> int:
            runs.append(item)
            return item * factor

        return scaled

    async with runtime(backend) as rt:
        assert (await rt.materialize([version("1", 2)], run_id="v"))["scaled"] == [
            0,
            2,
            4,
            6,
            8,
        ]
        runs.clear()
        same = await rt.materialize([version("1", 2)], run_id="v", force=True)
        assert same["scaled"] == [0, 2, 4, 6, 8] and runs == []  # the stored results
        changed = await rt.materialize([version("2", 3)], run_id="v", force=True)
    assert changed["scaled"] == [0, 3, 6, 9, 12]
    assert sorted(runs) == [0, 1, 2, 3, 4]


async def test_a_cancelled_barrier_fails_the_asset_with_the_reason(backend: Backend) -> None:
    started, go = anyio.Event(), anyio.Event()

    @fs.asset
    @scatter(items=lambda deps: range(12), max_concurrent=2)
    async def stopped(item: int) -> int:
        if item == 3:
            started.set()
            await go.wait()
        return item

    async with runtime(backend) as rt:
        async with anyio.create_task_group() as tg:
            outcome: list[Any] = []

            async def run() -> None:
                outcome.append(await rt.materialize([stopped], run_id="x", raise_on_error=False))

            tg.start_soon(run)
            await started.wait()
            await backend.store.cancel(barrier_id_of("x", "stopped", None), "operator said so")
            go.set()
    error = outcome[0].outcomes["stopped"].error
    assert isinstance(error, fs.AssetExecutionError)
    assert isinstance(error.__cause__, BarrierCancelledError)
    assert error.__cause__.reason == "operator said so"
    assert "operator said so" in str(error)


async def test_a_sized_source_s_total_is_known_from_the_start(backend: Backend) -> None:
    started: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(200), max_concurrent=2, tolerated_failure=1)
    async def fragile(item: int) -> int:
        started.append(item)
        if item >= 5:
            raise ValueError("broken")
        return item

    async with runtime(backend) as rt:
        result = await rt.materialize([fragile], run_id="t", raise_on_error=False)
    error = result.outcomes["fragile"].error
    assert isinstance(error, ScatterFailureThresholdExceeded)
    assert (error.total, error.succeeded) == (200, 5) and error.failed >= 2
    assert len(started) < 40  # stopped soon after the decision


async def test_a_duplicate_key_fails_the_asset(backend: Backend) -> None:
    @fs.asset
    @scatter(items=lambda deps: ["a", "b", "a"], key=lambda item: item)
    async def letters(item: str) -> str:
        return item

    async with runtime(backend) as rt:
        result = await rt.materialize([letters], raise_on_error=False)
    error = result.outcomes["letters"].error
    assert isinstance(error, fs.AssetExecutionError)
    assert isinstance(error.__cause__, DuplicateScatterKeyError) and error.__cause__.key == "a"


async def test_batches_are_refused_naming_the_asset(backend: Backend) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(4), batch=Batch(max_items=2))
    async def batched(item: list[int]) -> list[int]:
        return item

    async with runtime(backend) as rt:
        result = await rt.materialize([batched], raise_on_error=False)
    error = result.outcomes["batched"].error
    assert isinstance(error, fs.AssetExecutionError)
    assert isinstance(error.__cause__, fs.InvalidAssetError)
    assert "batched" in str(error) and "batch=" in str(error)


async def test_a_worker_shares_the_items(backend: Backend) -> None:
    worker_ran = anyio.Event()
    ran_by_worker: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(60), max_concurrent=1)
    async def shared(item: int) -> int:
        started.set()
        await worker_ran.wait()  # the starter's items wait until the worker ran one
        return item

    async def by_worker(item: int) -> int:
        ran_by_worker.append(item)
        worker_ran.set()
        return item

    started = anyio.Event()
    coordinator = BarrierScatterCoordinator(backend.store, poll_interval=0.05)
    async with fs.Runtime(coordinators={"scatter": coordinator}) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: rt.materialize([shared], run_id="w"))
            await started.wait()  # its items are stored
            summary = await coordinator.work("w", "shared", None, by_worker, max_concurrent=4)
    assert summary.succeeded == len(ran_by_worker) > 0
    barrier = barrier_id_of("w", "shared", None)
    assert (await backend.store.state(barrier)).succeeded == 60
    assert [r.value async for r in backend.store.gather(barrier)] == list(range(60))


async def test_the_starter_takes_over_the_items_of_a_lapsed_lease(backend: Backend) -> None:
    store = backend.store
    barrier = barrier_id_of("l", "taken", None)
    await store.open_barrier(
        barrier, run_id="l", asset="taken", partition=None, tolerated_failure=0
    )
    await store.add_items(
        barrier, [(i, str(i), i) for i in range(5)], SourceCheckpoint(5, exhausted=True)
    )
    dead = await store.join(lease=5)
    assert len(await store.claim(barrier, dead, 3)) == 3
    await store.record(barrier, dead, [ScatterItemResult("0", 0, fs.Status.SUCCEEDED, value=0)])
    await backend.lapse(dead)

    @fs.asset
    @scatter(items=lambda deps: range(5))
    async def taken(item: int) -> int:
        return item

    async with runtime(backend, poll_interval=0.05) as rt:
        result = await rt.materialize([taken], run_id="l")
    assert result["taken"] == list(range(5))


async def test_a_starter_whose_lease_ran_out_stops_and_says_so() -> None:
    clock = VirtualClock()
    store = MemoryBarrierStore(clock=clock)
    running = anyio.Event()

    @fs.asset
    @scatter(items=lambda deps: range(3), max_concurrent=1)
    async def stuck(item: int) -> int:
        running.set()
        await anyio.sleep_forever()
        return item

    coordinator = BarrierScatterCoordinator(store, lease=0.03)
    async with fs.Runtime(coordinators={"scatter": coordinator}) as rt:
        async with anyio.create_task_group() as tg:
            outcome: list[Any] = []

            async def run() -> None:
                outcome.append(await rt.materialize([stuck], raise_on_error=False))

            tg.start_soon(run)
            await running.wait()
            await clock.advance(1)  # past the lease: the next renewal is refused
    error = outcome[0].outcomes["stuck"].error
    assert isinstance(error.__cause__, BarrierLeaseLostError)
    assert "'stuck'" in str(error.__cause__)
    state = await store.state(barrier_id_of(error.run_id, "stuck", None))
    assert state.finished == 0


async def test_a_worker_leaves_only_after_its_last_results_are_written() -> None:
    store = MemoryBarrierStore()
    barrier = barrier_id_of("s", "slow", None)
    await store.open_barrier(barrier, run_id="s", asset="slow", partition=None, tolerated_failure=0)
    await store.add_items(
        barrier, [(i, str(i), i) for i in range(6)], SourceCheckpoint(6, exhausted=True)
    )
    record = store.record

    async def slow_record(*args: Any) -> Any:
        for _ in range(100):  # a slow write: the engine finishes meanwhile
            await anyio.lowlevel.checkpoint()
        return await record(*args)

    store.record = slow_record  # type: ignore[method-assign]
    ran: list[int] = []

    async def work(item: int) -> int:
        ran.append(item)
        return item

    coordinator = BarrierScatterCoordinator(store)
    summary = await coordinator.work("s", "slow", None, work, max_concurrent=2)
    assert sorted(ran) == list(range(6)) and summary.succeeded == 6
    state = await store.state(barrier)
    assert (state.succeeded, state.done) == (6, True)  # nothing handed back unwritten
