"""The BarrierStore contract, run against every barrier store.

Each test takes the ``backend`` fixture (``conftest.py``), parametrized as ``memory`` and
``postgres``; the postgres variant uses a fresh schema per test (and skips without a
server, except in CI). ``lapse`` makes a lease run out without waiting for it: the memory
store's virtual clock moves past it, the PostgreSQL lease's expiry is set in the past (as
if its worker stopped renewing).

A new barrier store joins by adding a parameter to ``BARRIER_STORES`` and a branch to the
``backend`` fixture.
"""

from __future__ import annotations

from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.scatter import DuplicateScatterKeyError
from flowstone.protocols import BarrierStore, ScatterItemResult, SourceCheckpoint

from .conftest import Backend

OK = fs.Status.SUCCEEDED
FAILED = fs.Status.FAILED


async def open_barrier(store: BarrierStore, tolerated: float = 0, **kwargs: Any) -> None:
    await store.open_barrier(
        "b", run_id="r", asset="a", partition=None, tolerated_failure=tolerated, **kwargs
    )


def items(start: int, stop: int) -> list[tuple[int, str, Any]]:
    return [(index, f"k{index}", {"n": index}) for index in range(start, stop)]


def success(index: int, value: Any = None, attempts: int = 1) -> ScatterItemResult:
    return ScatterItemResult(f"k{index}", index, OK, value=value, attempts=attempts)


def failure(index: int, error: str = "ValueError: no") -> ScatterItemResult:
    return ScatterItemResult(f"k{index}", index, FAILED, error=error)


async def gathered(store: BarrierStore) -> list[ScatterItemResult]:
    return [result async for result in store.gather("b")]


async def test_stores_are_barrier_stores(backend: Backend) -> None:
    assert isinstance(backend.store, BarrierStore)


async def test_opening_again_returns_the_stored_barrier(backend: Backend) -> None:
    store = backend.store
    await store.open_barrier(
        "b", run_id="r", asset="a", partition=None, tolerated_failure=2, total=3
    )
    lease = await store.join(lease=30)
    await store.record("b", lease, [failure(0)])
    again = await store.open_barrier(
        "b", run_id="r", asset="a", partition=None, tolerated_failure=0
    )
    assert (again.total, again.failed, again.exceeded) == (3, 1, False)


async def test_a_missing_barrier_is_a_key_error(backend: Backend) -> None:
    with pytest.raises(KeyError, match="nope"):
        await backend.store.state("nope")


async def test_a_tolerance_out_of_range_is_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="tolerated_failure"):
        await backend.store.open_barrier(
            "b", run_id="r", asset="a", partition=None, tolerated_failure=1.5
        )


async def test_claims_hand_out_each_pending_item_once_in_source_order(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 5), SourceCheckpoint(5))
    first, second = await store.join(lease=30), await store.join(lease=30)
    assert first.worker != second.worker
    claimed = await store.claim("b", first, 3)
    assert [unit.number for unit in claimed] == [0, 1, 2]
    assert claimed[1].keys == ("k1",) and claimed[1].items == ({"n": 1},)
    assert claimed[1].indexes == (1,)
    rest = await store.claim("b", second, 10)
    assert [unit.number for unit in rest] == [3, 4]
    assert await store.claim("b", second, 10) == []


async def test_a_page_and_its_checkpoint_are_stored_together(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    assert await store.checkpoint("b") == SourceCheckpoint(0, None, False)
    await store.add_items("b", items(0, 3), SourceCheckpoint(3, "c3"))
    assert await store.checkpoint("b") == SourceCheckpoint(3, "c3", False)
    # The same page again (a resumed reading) is harmless, and never moves it back.
    await store.add_items("b", items(0, 2), SourceCheckpoint(2, "c2"))
    assert await store.checkpoint("b") == SourceCheckpoint(3, "c3", False)
    state = await store.add_items("b", items(3, 4), SourceCheckpoint(4, None, exhausted=True))
    assert state.total == 4
    assert (await store.checkpoint("b")).exhausted
    lease = await store.join(lease=30)
    assert [unit.number for unit in await store.claim("b", lease, 10)] == [0, 1, 2, 3]


async def test_a_duplicate_key_refuses_the_whole_page(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))
    page = [(2, "k2", 2), (3, "k0", 3)]  # k0 is stored at index 0
    with pytest.raises(DuplicateScatterKeyError, match="'k0'") as caught:
        await store.add_items("b", page, SourceCheckpoint(4))
    assert caught.value.asset == "a"
    assert await store.checkpoint("b") == SourceCheckpoint(2)
    lease = await store.join(lease=30)
    assert [unit.number for unit in await store.claim("b", lease, 10)] == [0, 1]


async def test_an_item_keeps_its_first_result(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store, tolerated=5, total=3)
    await store.add_items("b", items(0, 3), SourceCheckpoint(3, exhausted=True))
    lease = await store.join(lease=30)
    await store.claim("b", lease, 3)
    state = await store.record("b", lease, [success(0, "first"), failure(1)])
    assert (state.succeeded, state.failed) == (1, 1)
    state = await store.record("b", lease, [success(0, "second"), success(1, "late")])
    assert (state.succeeded, state.failed, state.finished) == (1, 1, 2)
    state = await store.record("b", lease, [success(2, [1, 2], attempts=2)])
    assert (state.succeeded, state.retried, state.done) == (2, 1, True)
    results = await gathered(store)
    assert [(r.index, r.key, r.status, r.value, r.error) for r in results] == [
        (0, "k0", OK, "first", None),
        (1, "k1", FAILED, None, "ValueError: no"),
        (2, "k2", OK, [1, 2], None),
    ]
    assert results[2].attempts == 2


async def test_a_result_for_an_item_not_added_adds_it(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    state = await store.record("b", None, [success(7, 7)])
    assert state.succeeded == 1
    assert [(r.index, r.key, r.value) for r in await gathered(store)] == [(7, "k7", 7)]


async def test_the_store_decides_the_threshold(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store, tolerated=1)
    await store.add_items("b", items(0, 4), SourceCheckpoint(4))
    lease = await store.join(lease=30)
    await store.claim("b", lease, 1)
    assert not (await store.record("b", lease, [failure(0)])).exceeded
    state = await store.record("b", lease, [failure(1)])
    assert state.exceeded
    assert (await store.state("b")).exceeded
    assert await store.claim("b", lease, 10) == []  # an exceeded barrier hands out nothing


async def test_a_fraction_is_decided_once_the_total_is_known(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store, tolerated=0.25)
    await store.add_items("b", items(0, 4), SourceCheckpoint(4))
    state = await store.record("b", None, [failure(0), failure(1)])
    assert not state.exceeded  # 2 of an unknown total
    state = await store.add_items("b", [], SourceCheckpoint(4, exhausted=True))
    assert state.exceeded  # 2 of 4 is more than a quarter


async def test_a_cancelled_barrier_hands_out_nothing(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 3), SourceCheckpoint(3))
    await store.cancel("b", "stop")
    await store.cancel("b", "again")  # the first reason stays
    state = await store.state("b")
    assert state.cancelled and state.reason == "stop"
    lease = await store.join(lease=30)
    assert await store.claim("b", lease, 10) == []
    state = await store.reopen("b")
    assert not state.cancelled and state.reason is None


async def test_released_items_go_to_the_next_claim(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 3), SourceCheckpoint(3))
    first, second = await store.join(lease=30), await store.join(lease=30)
    await store.claim("b", first, 2)
    await store.release("b", first)
    assert [unit.number for unit in await store.claim("b", second, 10)] == [0, 1, 2]


async def test_leaving_hands_back_what_the_lease_holds(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))
    first = await store.join(lease=30)
    await store.claim("b", first, 2)
    await store.record("b", first, [success(0)])
    await store.leave(first)
    second = await store.join(lease=30)
    assert [unit.number for unit in await store.claim("b", second, 10)] == [1]


async def test_a_live_lease_keeps_its_items(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))
    first, second = await store.join(lease=30), await store.join(lease=30)
    await store.claim("b", first, 2)
    assert await store.renew(first)
    assert await store.recover("b", second) == 0
    assert await store.claim("b", second, 10) == []


async def test_a_lapsed_lease_is_fenced_off(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))
    late = await store.join(lease=5)
    await store.claim("b", late, 2)
    await store.record("b", late, [success(0, "late's")])
    await backend.lapse(late)
    other = await store.join(lease=30)
    # Its lease ran out: its unfinished item goes back, and it is told so.
    assert await store.recover("b", other) == 1
    assert not await store.renew(late)
    assert await store.claim("b", late, 10) == []
    [unit] = await store.claim("b", other, 10)
    assert unit.number == 1
    await store.record("b", other, [success(1, "other's")])
    # The fenced-off worker finishes its copy anyway: the first result stands.
    state = await store.record("b", late, [success(1, "late's")])
    assert (state.succeeded, state.finished) == (2, 2)
    assert [r.value for r in await gathered(store)] == ["late's", "other's"]


async def test_recover_never_takes_the_asking_lease_s_items(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 1), SourceCheckpoint(1))
    lease = await store.join(lease=5)
    await store.claim("b", lease, 1)
    await backend.lapse(lease)
    assert await store.recover("b", lease) == 0


async def test_reopening_runs_the_failed_items_again(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store, tolerated=0)
    await store.add_items("b", items(0, 3), SourceCheckpoint(3, exhausted=True))
    lease = await store.join(lease=30)
    await store.claim("b", lease, 3)
    state = await store.record("b", lease, [success(0, "kept"), failure(1)])
    assert state.exceeded
    await store.release("b", lease)
    state = await store.reopen("b")
    assert (state.succeeded, state.failed, state.exceeded, state.cancelled) == (1, 0, False, False)
    assert [unit.number for unit in await store.claim("b", lease, 10)] == [1, 2]
    assert [r.value for r in await gathered(store)] == ["kept"]


async def test_a_finished_page_goes_in_with_its_results_and_checkpoint(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store, tolerated=1)
    lease = await store.join(lease=30)
    page = [(0, "0", 10), *items(1, 3)]  # a default key, and keys of their own
    results = [success(1, "one"), ScatterItemResult("0", 0, OK, value="zero"), failure(2)]
    state = await store.add_finished("b", lease, page, results, SourceCheckpoint(3, "c3"))
    assert (state.succeeded, state.failed, state.exceeded) == (2, 1, False)
    assert await store.checkpoint("b") == SourceCheckpoint(3, "c3", False)
    assert await store.claim("b", lease, 10) == []  # nothing of it is pending
    assert [(r.key, r.value, r.error) for r in await gathered(store)] == [
        ("0", "zero", None),
        ("k1", "one", None),
        ("k2", None, "ValueError: no"),
    ]
    # The same page again (a resumed run) keeps the first results; the end is recorded.
    again = [success(0, "late"), success(1, "late"), success(2, "late")]
    page_again = [(0, "0", 10), *items(1, 3)]
    state = await store.add_finished(
        "b",
        lease,
        page_again,
        [ScatterItemResult("0", 0, OK, "late"), *again[1:]],
        SourceCheckpoint(3, None, exhausted=True),
    )
    assert (state.total, state.succeeded, state.failed, state.done) == (3, 2, 1, True)
    # The failed item kept its item: reopened, it is claimed with it.
    await store.reopen("b")
    [unit] = await store.claim("b", lease, 10)
    assert (unit.number, unit.keys, unit.items) == (2, ("k2",), ({"n": 2},))


def positions(start: int, stop: int) -> list[tuple[int, str, Any]]:
    """Items with the default key (their position)."""
    return [(index, str(index), index) for index in range(start, stop)]


def done(index: int, value: Any) -> ScatterItemResult:
    return ScatterItemResult(str(index), index, OK, value=value)


async def test_a_page_that_all_succeeded_goes_in_once(backend: Backend) -> None:
    # The common page: default keys, every item succeeded at its first attempt.
    store = backend.store
    await open_barrier(store)
    lease = await store.join(lease=30)
    first = [done(1, 10), done(0, 0), done(2, 20)]  # in the order they finished
    state = await store.add_finished("b", lease, positions(0, 3), first, SourceCheckpoint(3))
    assert (state.succeeded, state.finished) == (3, 3)
    again = [done(0, -1), done(1, -1), done(2, -1), done(3, 30)]
    end = SourceCheckpoint(4, exhausted=True)
    state = await store.add_finished("b", lease, positions(0, 4), again, end)
    assert (state.total, state.succeeded, state.done) == (4, 4, True)
    assert [(r.key, r.value) for r in await gathered(store)] == [
        ("0", 0),
        ("1", 10),
        ("2", 20),
        ("3", 30),
    ]


async def test_a_page_at_positions_that_hold_other_keys_stores_nothing(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))  # keys k0 and k1
    lease = await store.join(lease=30)
    with pytest.raises(DuplicateScatterKeyError):
        await store.add_finished(
            "b", lease, positions(1, 3), [done(1, 1), done(2, 2)], SourceCheckpoint(3)
        )
    assert await store.checkpoint("b") == SourceCheckpoint(2)
    assert (await store.state("b")).finished == 0


@pytest.mark.parametrize("value", [7, -(10**30), "text", "nul\x00", 0.1, 1e300, True, None])
async def test_a_scalar_result_gathers_back_as_it_was(backend: Backend, value: Any) -> None:
    store = backend.store
    await open_barrier(store)
    lease = await store.join(lease=30)
    await store.add_finished("b", lease, positions(0, 1), [done(0, value)], SourceCheckpoint(1))
    await store.add_items("b", positions(1, 2), SourceCheckpoint(2, exhausted=True))
    await store.claim("b", lease, 1)
    await store.record("b", lease, [done(1, value)])
    values = [r.value for r in await gathered(store)]
    assert values == [value, value]
    assert all(type(v) is type(value) for v in values)


async def test_a_finished_page_with_a_duplicate_key_stores_nothing(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    await store.add_items("b", items(0, 2), SourceCheckpoint(2))
    lease = await store.join(lease=30)
    page = [(2, "k2", 2), (3, "k0", 3)]  # k0 is stored at index 0
    with pytest.raises(DuplicateScatterKeyError, match="'k0'"):
        await store.add_finished(
            "b", lease, page, [success(2), ScatterItemResult("k0", 3, OK)], SourceCheckpoint(4)
        )
    assert await store.checkpoint("b") == SourceCheckpoint(2)
    state = await store.state("b")
    assert state.finished == 0
    assert [unit.number for unit in await store.claim("b", lease, 10)] == [0, 1]


async def test_a_finished_page_takes_one_result_per_item_at_most(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    lease = await store.join(lease=30)
    with pytest.raises(ValueError, match=r"without an item: \[5\]"):
        await store.add_finished(
            "b", lease, items(0, 2), [success(0), success(5)], SourceCheckpoint(2)
        )
    with pytest.raises(ValueError, match="1 repeated"):
        await store.add_finished(
            "b", lease, items(0, 2), [success(0), success(0)], SourceCheckpoint(2)
        )
    assert await store.checkpoint("b") == SourceCheckpoint(0)
    assert (await store.state("b")).finished == 0


async def test_items_of_a_page_without_a_result_stay_held_by_the_lease(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)
    mine = await store.join(lease=5)
    other = await store.join(lease=30)
    state = await store.add_finished(
        "b", mine, items(0, 3), [success(1, "one")], SourceCheckpoint(3, exhausted=True)
    )
    assert (state.total, state.succeeded, state.done) == (3, 1, False)
    assert await store.claim("b", other, 10) == []  # 0 and 2 run under ``mine``
    state = await store.record("b", mine, [success(0, "zero")])
    assert state.succeeded == 2
    await backend.lapse(mine)  # its lease ran out before item 2 finished
    await store.recover("b", other)
    [unit] = await store.claim("b", other, 10)
    assert (unit.number, unit.keys, unit.items) == (2, ("k2",), ({"n": 2},))
    state = await store.record("b", other, [success(2, "two")])
    assert state.done
    assert [r.value for r in await gathered(store)] == ["zero", "one", "two"]


async def test_other_workers_are_the_live_leases_but_the_asking_one(backend: Backend) -> None:
    store = backend.store
    mine = await store.join(lease=30)
    assert not await store.has_other_workers(mine)
    other = await store.join(lease=5)
    assert await store.has_other_workers(mine)
    assert await store.has_other_workers(other)
    await backend.lapse(other)
    assert not await store.has_other_workers(mine)
    await store.leave(other)
    assert not await store.has_other_workers(mine)


async def test_a_barrier_of_another_recipe_starts_over(backend: Backend) -> None:
    store = backend.store
    await open_barrier(store)  # stored without a recipe: the next one opened with is kept
    await store.add_items("b", items(0, 2), SourceCheckpoint(2, "c2"))
    lease = await store.join(lease=30)
    await store.claim("b", lease, 2)
    await store.record("b", lease, [success(0, "old")])
    for _ in range(2):
        state = await store.open_barrier(
            "b", run_id="r", asset="a", partition=None, tolerated_failure=0, recipe="v1"
        )
        assert state.succeeded == 1  # taken up, then the same recipe: continued
    state = await store.open_barrier(
        "b", run_id="r", asset="a", partition=None, tolerated_failure=0, recipe=None
    )
    assert state.succeeded == 1  # no recipe: continued whatever the stored one
    state = await store.open_barrier(
        "b", run_id="r", asset="a", partition=None, tolerated_failure=0, recipe="v2"
    )
    assert (state.succeeded, state.finished, state.total) == (0, 0, None)
    assert await store.checkpoint("b") == SourceCheckpoint(0)
    assert await gathered(store) == []
    assert await store.claim("b", lease, 10) == []
    await store.add_items("b", items(0, 1), SourceCheckpoint(1, exhausted=True))
    [unit] = await store.claim("b", lease, 10)
    state = await store.record("b", lease, [success(0, "new")])
    assert state.done and [r.value for r in await gathered(store)] == ["new"]


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "item",
    [7, "text", {"n": [1, 2]}, "\ud800", 10**5000, _nested(5000)],
    ids=["int", "str", "dict", "surrogate", "huge-int", "deep"],
)
async def test_check_items_refuses_what_add_items_refuses(backend: Backend, item: Any) -> None:
    store = backend.store
    await open_barrier(store)
    page = [(0, "0", 1), (1, "1", item)]
    try:
        await store.add_items("b", page, SourceCheckpoint(2))
    except fs.StorageError:
        with pytest.raises(fs.StorageError, match=r"'a'.*item '1'"):
            await store.check_items("b", page)
    else:
        await store.check_items("b", page)
