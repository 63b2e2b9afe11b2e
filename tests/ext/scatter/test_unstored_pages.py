"""A scatter's starting process runs its own items before it stores them, while alone."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    BarrierScatterCoordinator,
    DuplicateScatterKeyError,
    ScatterFailureThresholdExceeded,
    barrier_id_of,
    scatter,
)
from flowstone.protocols import BarrierLease, BarrierState, BarrierStore, BarrierUnit

from .conftest import Backend


class CountingStore:
    """A barrier store that counts the calls that store items, and the units claimed."""

    def __init__(self, store: BarrierStore) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self.claimed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def add_items(self, *args: Any) -> BarrierState:
        self.calls["add_items"] += 1
        return await self._store.add_items(*args)

    async def add_finished(self, *args: Any) -> BarrierState:
        self.calls["add_finished"] += 1
        return await self._store.add_finished(*args)

    async def claim(self, barrier_id: str, lease: BarrierLease, limit: int) -> list[BarrierUnit]:
        units = await self._store.claim(barrier_id, lease, limit)
        self.claimed += len(units)
        return units


def runtime(store: Any, **options: Any) -> fs.Runtime:
    coordinator = BarrierScatterCoordinator(store, **options)
    return fs.Runtime(coordinators={"scatter": coordinator})


async def test_a_lone_starter_stores_each_page_with_its_results(backend: Backend) -> None:
    store = CountingStore(backend.store)

    @fs.asset
    @scatter(items=lambda deps: range(50), max_concurrent=5)  # pages of 10 items
    async def doubled(item: int) -> int:
        return item * 2

    async with runtime(store) as rt:
        result = await rt.materialize([doubled], run_id="alone")
    assert result["doubled"] == [n * 2 for n in range(50)]
    # Five full pages and the empty one that ends the source; nothing went in pending.
    assert store.calls == Counter(add_finished=6)
    assert store.claimed == 0
    state = await backend.store.state(barrier_id_of("alone", "doubled", None))
    assert (state.total, state.succeeded, state.done) == (50, 50, True)


async def test_a_failure_among_the_unstored_items_stops_the_scatter(backend: Backend) -> None:
    ran: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(400), max_concurrent=2)  # pages of 4 items
    async def fragile(item: int) -> int:
        ran.append(item)
        if item == 5:
            raise ValueError("five")
        return item

    async with runtime(backend.store) as rt:
        result = await rt.materialize([fragile], raise_on_error=False)
    error = result.outcomes["fragile"].error
    assert isinstance(error, ScatterFailureThresholdExceeded)
    assert error.first_errors == (("5", "ValueError: five"),)
    # Decided when its page was stored: a few pages later at most, not at the end.
    assert 6 <= len(ran) <= 40


async def test_a_duplicate_key_fails_the_asset_before_its_page_runs(backend: Backend) -> None:
    # Keyed items are stored before they run (only the store knows every key): a page
    # with a key stored before is refused as it goes in.
    runs: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(20), max_concurrent=2, key=lambda n: f"k{n % 15}")
    async def clashing(item: int) -> int:
        runs.append(item)
        return item

    async with runtime(backend.store) as rt:
        result = await rt.materialize([clashing], raise_on_error=False)
    error = result.outcomes["clashing"].error
    assert isinstance(error, fs.AssetExecutionError)
    cause = error.__cause__
    assert isinstance(cause, DuplicateScatterKeyError)
    assert (cause.key, cause.index) == ("k0", 15)
    assert runs == []  # the one page (page_size=1000) holding it went in first


async def test_a_cancelled_scatter_runs_again_only_what_was_not_stored(
    backend: Backend,
) -> None:
    runs: Counter[int] = Counter()
    reached = anyio.Event()
    first_attempt = True

    @fs.asset
    @scatter(items=lambda deps: range(40), max_concurrent=2)
    async def counted(item: int) -> int:
        runs[item] += 1
        if first_attempt and item == 21:
            reached.set()
            await anyio.sleep_forever()
        return item

    barrier = barrier_id_of("c", "counted", None)
    async with runtime(backend.store) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: rt.materialize([counted], run_id="c", raise_on_error=False))
            await reached.wait()
            tg.cancel_scope.cancel()
        stored = {r.index async for r in backend.store.gather(barrier)}
        assert stored and max(stored) < 21  # some pages were stored before the cancel
        first_attempt = False
        result = await rt.materialize([counted], run_id="c", raise_on_error=False)
    assert result["counted"] == list(range(40))
    twice = {item for item, count in runs.items() if count > 1}
    assert twice and not twice & stored
    assert set(runs) == set(range(40))


class StallingStore(CountingStore):
    """Its first ``add_finished`` of the page at ``index`` waits until it is cancelled, as
    a write cut off by a cancel (nothing of the page is stored)."""

    def __init__(self, store: BarrierStore, index: int) -> None:
        super().__init__(store)
        self._index = index
        self.stalled = anyio.Event()

    async def add_finished(self, *args: Any) -> BarrierState:
        items = args[2]
        if items and items[0][0] == self._index and not self.stalled.is_set():
            self.stalled.set()
            await anyio.sleep_forever()
        return await super().add_finished(*args)


async def test_a_page_whose_write_was_cut_off_is_stored_before_the_pages_after_it(
    backend: Backend,
) -> None:
    # Regression: the last flush stored the finished page after it, moving the checkpoint
    # past items stored nowhere, and the resumed scatter waited for them forever.
    store = StallingStore(backend.store, index=8)  # pages of 4 items
    first_attempt = True
    reached = anyio.Event()

    @fs.asset
    @scatter(items=lambda deps: range(40), max_concurrent=2)
    async def cut(item: int) -> int:
        if first_attempt and item == 21:
            reached.set()
            await anyio.sleep_forever()
        return item

    async with runtime(store) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: rt.materialize([cut], run_id="w", raise_on_error=False))
            await store.stalled.wait()
            await reached.wait()  # pages 12-15 and 16-19 have finished meanwhile
            tg.cancel_scope.cancel()
        stored = {r.index async for r in backend.store.gather(barrier_id_of("w", "cut", None))}
        assert set(range(8, 20)) <= stored
        first_attempt = False
        with anyio.fail_after(10):
            result = await rt.materialize([cut], run_id="w", raise_on_error=False)
    assert result["cut"] == list(range(40))


async def test_a_worker_that_joins_leaves_the_starters_running_items_alone(
    backend: Backend,
) -> None:
    worker_ran = anyio.Event()
    started = anyio.Event()
    by_starter: list[int] = []
    by_worker: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(30), max_concurrent=1)  # pages of 2 items
    async def shared(item: int) -> int:
        by_starter.append(item)
        started.set()
        await worker_ran.wait()
        return item

    async def work(item: int) -> int:
        by_worker.append(item)
        worker_ran.set()
        return item

    coordinator = BarrierScatterCoordinator(backend.store, poll_interval=0.05)
    async with fs.Runtime(coordinators={"scatter": coordinator}) as rt:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: rt.materialize([shared], run_id="j"))
            await started.wait()  # the starter runs item 0, unstored
            await coordinator.work("j", "shared", None, work, max_concurrent=2)
    assert by_starter[0] == 0 and 0 not in by_worker and by_worker
    assert not set(by_starter) & set(by_worker)
    values = [r.value async for r in backend.store.gather(barrier_id_of("j", "shared", None))]
    assert values == list(range(30))


@pytest.mark.parametrize("limit", [1, 3])
async def test_pages_wait_for_room_and_are_stored_in_source_order(limit: int) -> None:
    from flowstone.ext.scatter._unstored_pages import UnstoredPages
    from flowstone.protocols import ScatterItemResult, SourceCheckpoint

    pages = UnstoredPages(limit=limit)
    ready: list[bool] = []
    pages.on_ready(lambda: ready.append(True))
    for n in range(limit):
        assert await pages.put([(n, str(n), n)], SourceCheckpoint(n + 1))
    assert not await pages.put([(9, "9", 9)], SourceCheckpoint(10), within=0)
    first = pages.take()
    last = pages.take() if limit > 1 else first
    assert first is not None and last is not None
    if limit > 1:
        assert pages.finish(ScatterItemResult(str(last.start), last.start, fs.Status.SUCCEEDED))
        assert pages.pop_ready() is None  # the head page has not finished
    assert pages.finish(ScatterItemResult("0", 0, fs.Status.SUCCEEDED))
    assert ready and pages.pop_ready() is first
    pages.stored()
    assert not pages.finish(ScatterItemResult("0", 0, fs.Status.SUCCEEDED))  # stored


@pytest.mark.parametrize("make", [lambda n: n * 2, lambda n: (n, [n]), lambda n: {"n": n}])
async def test_a_lone_starter_gathers_what_a_rerun_reads_back(backend: Backend, make: Any) -> None:
    # Scalars are gathered from memory, other values from the store: either way the first
    # run's value is the one any later run of the same barrier reads back.
    store = CountingStore(backend.store)

    @fs.asset
    @scatter(items=lambda deps: range(25), max_concurrent=3)
    async def made(item: int) -> Any:
        return make(item)

    async with runtime(store) as rt:
        first = (await rt.materialize([made], run_id="m"))["made"]
        stored = [r.value async for r in backend.store.gather(barrier_id_of("m", "made", None))]
        again = (await rt.materialize([made], run_id="m", force=True))["made"]
    assert first == stored == again
    assert [type(v) for v in first] == [type(v) for v in stored]
    assert store.claimed == 0


class RefusingStore(CountingStore):
    """Refuses to store any page from position ``index`` on, as a full disk would."""

    def __init__(self, store: BarrierStore, index: int) -> None:
        super().__init__(store)
        self._index = index

    def _refuse(self, items: Any) -> None:
        if items and items[0][0] >= self._index:
            raise fs.StorageError(f"no room for item {items[0][0]}")

    async def add_items(self, *args: Any) -> BarrierState:
        self._refuse(args[1])
        return await super().add_items(*args)

    async def add_finished(self, *args: Any) -> BarrierState:
        self._refuse(args[2])
        return await super().add_finished(*args)


async def test_a_store_that_refuses_a_page_fails_the_asset_with_its_error(
    backend: Backend,
) -> None:
    store = RefusingStore(backend.store, index=8)

    @fs.asset
    @scatter(items=lambda deps: range(20), max_concurrent=2)
    async def refused(item: int) -> int:
        return item

    async with runtime(store) as rt:
        with pytest.raises(fs.AssetExecutionError, match="no room for item 8") as caught:
            await rt.materialize([refused], run_id="f")
    assert isinstance(caught.value.__cause__, fs.StorageError)
    stored = [r.index async for r in backend.store.gather(barrier_id_of("f", "refused", None))]
    assert stored == list(range(8))  # the pages before it keep their results


async def test_a_result_postgresql_cannot_store_fails_its_item_only(pg_backend: Backend) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(6), max_concurrent=2, tolerated_failure=1)
    async def objects(item: int) -> Any:
        return object() if item == 4 else item

    async with runtime(pg_backend.store) as rt:
        result = await rt.materialize([objects], run_id="o")
    assert result["objects"] == [0, 1, 2, 3, 5]
    [failed] = [
        r
        async for r in pg_backend.store.gather(barrier_id_of("o", "objects", None))
        if r.error is not None
    ]
    assert failed.key == "4" and failed.error is not None
    assert "'objects'" in failed.error and "allow_pickle=True" in failed.error


async def test_a_finished_scatter_marks_its_postgresql_barrier_done(pg_backend: Backend) -> None:
    from flowstone.ext.postgres import PostgresBarrierStore

    store = pg_backend.store
    assert isinstance(store, PostgresBarrierStore)

    @fs.asset
    @scatter(items=lambda deps: range(7), max_concurrent=2)
    async def counted(item: int) -> int:
        return item

    async with runtime(store) as rt:
        await rt.materialize([counted], run_id="d")
        again = await rt.materialize([counted], run_id="d", force=True)
    assert again["counted"] == list(range(7))
    row = await store.ops.by_key(barrier_id_of("d", "counted", None))
    assert row is not None and row.counts.status == "done"


async def test_an_item_postgresql_cannot_store_is_refused_before_it_runs(
    pg_backend: Backend,
) -> None:
    runs: list[Any] = []

    @fs.asset
    @scatter(items=lambda deps: [1, "\ud800", 3], max_concurrent=2)
    async def odd(item: Any) -> int:
        runs.append(item)
        return 1

    async with runtime(pg_backend.store) as rt:
        with pytest.raises(fs.AssetExecutionError, match=r"'odd'.*item '1'") as caught:
            await rt.materialize([odd])
    assert isinstance(caught.value.__cause__, fs.StorageError)
    assert runs == []  # none of its page ran


async def test_a_slow_item_holds_up_none_of_the_items_after_it(backend: Backend) -> None:
    store = CountingStore(backend.store)
    release, last_ran = anyio.Event(), anyio.Event()
    runs: Counter[int] = Counter()

    @fs.asset
    @scatter(items=lambda deps: range(40), max_concurrent=2)  # pages of 4, 3 at a time
    async def long_tail(item: int) -> int:
        runs[item] += 1
        if item == 3:
            await release.wait()
        if item == 39:
            last_ran.set()
        return item

    async with runtime(store) as rt:
        async with anyio.create_task_group() as tg:
            outcome: list[Any] = []

            async def run() -> None:
                outcome.append(await rt.materialize([long_tail], run_id="t"))

            tg.start_soon(run)
            with anyio.fail_after(10):
                await last_ran.wait()  # the pages after item 3's were stored and run
            release.set()
    assert outcome[0]["long_tail"] == list(range(40))
    assert set(runs.values()) == {1}
    assert store.claimed == 0


async def test_the_next_scatter_takes_up_the_postgresql_session_the_last_one_left(
    pg_backend: Backend,
) -> None:
    store = pg_backend.store
    leases: list[BarrierLease] = []

    class Joins(CountingStore):
        async def join(self, *, lease: float) -> BarrierLease:
            joined = await self._store.join(lease=lease)
            leases.append(joined)
            return joined

    @fs.asset
    @scatter(items=lambda deps: range(3))
    async def small(item: int) -> int:
        return item

    async with runtime(Joins(store)) as rt:
        for run_id in ("a", "b"):
            assert (await rt.materialize([small], run_id=run_id))["small"] == [0, 1, 2]
            other = await store.join(lease=29)  # a session of its own: the idle one
            assert other.worker != leases[-1].worker  # (of another lease) is no worker
            assert not await store.has_other_workers(other)
            await store.leave(other)
    assert leases[0].worker == leases[1].worker
