"""MemoryBarrierStore under random interleavings of claims, results, releases and lapses."""

from __future__ import annotations

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.scatter import MemoryBarrierStore
from flowstone.protocols import BarrierLease, ScatterItemResult, SourceCheckpoint
from flowstone.testing import VirtualClock

ITEMS = 12

step = st.one_of(
    st.tuples(st.just("claim"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("record"), st.integers(0, 2), st.integers(1, 5)),
    st.tuples(st.just("release"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("lapse"), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=150)
@given(st.lists(step, max_size=40))
def test_every_item_ends_with_one_result_whatever_the_interleaving(
    steps: list[tuple[str, int, int]],
) -> None:
    anyio.run(_interleave, steps)


async def _interleave(steps: list[tuple[str, int, int]]) -> None:
    clock = VirtualClock()
    store = MemoryBarrierStore(clock=clock)
    await store.open_barrier("b", run_id="r", asset="a", partition=None, tolerated_failure=ITEMS)
    await store.add_items(
        "b", [(i, f"k{i}", i) for i in range(ITEMS)], SourceCheckpoint(ITEMS, exhausted=True)
    )
    leases: list[BarrierLease] = [await store.join(lease=10) for _ in range(3)]
    held: dict[int, set[int]] = {lease.worker: set() for lease in leases}
    recorded: dict[int, int] = {}  # item -> the worker whose result counted

    async def rejoin(slot: int) -> BarrierLease:
        if not await store.renew(leases[slot]):
            held[leases[slot].worker] = set()
            leases[slot] = await store.join(lease=10)
            held[leases[slot].worker] = set()
        return leases[slot]

    for action, slot, count in steps:
        lease = leases[slot]
        if action == "claim":
            lease = await rejoin(slot)
            for unit in await store.claim("b", lease, count):
                # Nobody else holds it, and it has no result yet.
                assert all(unit.number not in mine for mine in held.values())
                assert unit.number not in recorded
                held[lease.worker].add(unit.number)
        elif action == "record":
            mine = sorted(held[lease.worker])[:count]
            results = [ScatterItemResult(f"k{i}", i, fs.Status.SUCCEEDED, value=i) for i in mine]
            before = (await store.state("b")).finished
            state = await store.record("b", lease, results)
            fresh = [i for i in mine if i not in recorded]
            assert state.finished == before + len(fresh)
            for i in fresh:
                recorded[i] = lease.worker
            held[lease.worker].difference_update(mine)
        elif action == "release":
            await store.release("b", lease)
            held[lease.worker].clear()
        else:
            await clock.advance(11)
            other = await rejoin((slot + 1) % 3)
            await store.recover("b", other)
            for worker in list(held):
                if worker != other.worker:
                    held[worker].clear()

    # Drain: one fresh lease finishes whatever is left.
    last = await store.join(lease=10)
    for lease in leases:
        await store.leave(lease)
    while units := await store.claim("b", last, ITEMS):
        await store.record(
            "b",
            last,
            [ScatterItemResult(u.keys[0], u.number, fs.Status.SUCCEEDED) for u in units],
        )
    state = await store.state("b")
    assert state.done and state.finished == ITEMS
    results = [result async for result in store.gather("b")]
    assert [result.index for result in results] == list(range(ITEMS))
