"""``runtime.subscribe``: filters, the bounded buffer and ``Dropped``, many subscribers, close."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs
from flowstone.events import (
    AssetEvent,
    AssetStarted,
    AssetSucceeded,
    Dropped,
    Event,
    RunFinished,
    RunStarted,
)


@fs.asset
def a() -> int:
    return 1


@fs.asset
def b(a: int) -> int:
    return a + 1


@fs.asset
def c(b: int) -> int:
    return b + 1


PIPELINE = fs.Pipeline([a, b, c])


async def read_until_finished(events: object) -> list[Event]:
    seen: list[Event] = []
    async for event in events:  # type: ignore[attr-defined]
        seen.append(event)
        if isinstance(event, RunFinished):
            break
    return seen


async def test_a_subscriber_reads_a_run_as_it_happens() -> None:
    async with fs.Runtime() as rt:
        async with rt.subscribe() as events, anyio.create_task_group() as tg:
            seen: list[Event] = []

            async def read() -> None:
                seen.extend(await read_until_finished(events))

            tg.start_soon(read)
            result = await rt.materialize(PIPELINE)
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert [e.asset for e in seen if isinstance(e, AssetSucceeded)] == ["a", "b", "c"]
    assert {e.run_id for e in seen} == {result.run_id}


async def test_filters_by_run_asset_and_kind() -> None:
    async with fs.Runtime() as rt:
        by_run = rt.subscribe(run_id="r2")
        by_asset = rt.subscribe(asset="b")
        by_kind = rt.subscribe(kinds=[RunStarted, "AssetSucceeded"])
        by_base = rt.subscribe(kinds=AssetEvent, asset=["a", "c"])
        for run_id in ("r1", "r2"):
            await rt.materialize(PIPELINE, run_id=run_id)
        for subscription in (by_run, by_asset, by_kind, by_base):
            subscription.close()
        assert {e.run_id async for e in by_run} == {"r2"}
        assert {(type(e).__name__, e.asset) async for e in by_asset} == {  # type: ignore[attr-defined]
            ("AssetStarted", "b"),
            ("AssetSucceeded", "b"),
        }
        assert [type(e).__name__ async for e in by_kind] == [
            "RunStarted",
            *["AssetSucceeded"] * 3,
        ] * 2
        assert {e.asset async for e in by_base} == {"a", "c"}  # type: ignore[attr-defined]


async def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many() -> None:
    async with fs.Runtime() as rt:
        everything = rt.subscribe(buffer=10_000)
        slow = rt.subscribe(buffer=3)
        # Nobody reads while the run goes: it finishes all the same.
        await rt.materialize(PIPELINE)
        everything.close()
        slow.close()
        every = [e async for e in everything]
        got = [e async for e in slow]
    assert isinstance(got[0], Dropped)
    assert got[0].count == len(every) - 3
    assert got[1:] == every[-3:]
    assert isinstance(got[-1], RunFinished)


async def test_many_subscribers_each_get_every_event() -> None:
    async with fs.Runtime() as rt:
        subscriptions = [rt.subscribe(buffer=100) for _ in range(2000)]
        await rt.materialize(PIPELINE)
        for subscription in subscriptions:
            subscription.close()
        first = [e async for e in subscriptions[0]]
        last = [e async for e in subscriptions[-1]]
    assert len(first) == 2 + 2 * 3 and first == last


async def test_closing_the_runtime_ends_the_iteration() -> None:
    rt = fs.Runtime()
    await rt.open()
    seen: list[Event] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async with rt.subscribe() as events:
                seen.extend([event async for event in events])

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        await rt.materialize([a])
        await rt.aclose()
    assert [type(e).__name__ for e in seen] == [
        "RunStarted",
        "AssetStarted",
        "AssetSucceeded",
        "RunFinished",
    ]
    with pytest.raises(fs.RuntimeStateError):
        rt.subscribe()


async def test_without_subscribers_no_events_are_built() -> None:
    rt = fs.Runtime()
    assert not rt.has_sinks
    subscription = rt.subscribe()
    assert rt.has_sinks
    subscription.close()
    assert not rt.has_sinks


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"run_id": ""}, "run_id"),
        ({"asset": []}, "asset"),
        ({"kinds": [int]}, "kinds"),
        ({"kinds": []}, "kinds"),
        ({"buffer": 0}, "buffer"),
    ],
)
def test_bad_filters_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(fs.ConfigurationError, match=message):
        fs.Runtime().subscribe(**options)  # type: ignore[arg-type]


@given(total=st.integers(0, 60), buffer=st.integers(1, 20), read_every=st.integers(0, 7))
async def test_what_a_subscriber_reads_is_what_it_kept_and_a_count_of_the_rest(
    total: int, buffer: int, read_every: int
) -> None:
    rt = fs.Runtime()
    subscription = rt.subscribe(buffer=buffer)
    sent = [AssetStarted(run_id="r", asset=f"x{i}") for i in range(total)]
    got: list[Event] = []
    for i, event in enumerate(sent):
        rt.emit(event)
        if read_every and i % read_every == 0:
            got.append(await subscription.__anext__())
    subscription.close()
    got += [e async for e in subscription]
    # Each run of Dropped events counts exactly the events lost between the kept ones
    # around it, and the newest events are never the ones lost.
    position = {id(e): i for i, e in enumerate(sent)}
    previous, lost = -1, 0
    for event in got:
        if isinstance(event, Dropped):
            lost += event.count
            continue
        index = position[id(event)]
        assert index - previous - 1 == lost
        previous, lost = index, 0
    assert previous == total - 1 or (total == 0 and not got)
    assert lost == 0
