"""Batching: limits, groups, custom batching, shared input, and per-item accounting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    Batch,
    BatchResultError,
    InvalidBatchError,
    ScatterFailureThresholdExceeded,
    scatter,
    scatter_map,
)


def recorder() -> tuple[list[list[Any]], Any]:
    calls: list[list[Any]] = []

    async def work(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        await anyio.lowlevel.checkpoint()
        return [f"r{x}" for x in items]

    return calls, work


async def test_max_items() -> None:
    calls, work = recorder()
    result = await scatter_map(work, range(10), batch=Batch(max_items=3), max_concurrent=2)
    assert result == [f"r{i}" for i in range(10)]
    assert sorted(calls) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


async def test_max_bytes_with_size() -> None:
    calls, work = recorder()
    words = ["aaaa", "bb", "cc", "dddddddd", "e", "ff", "g"]
    result = await scatter_map(work, words, batch=Batch(max_bytes=5, size=len), max_concurrent=1)
    assert result == [f"r{w}" for w in words]
    # an item larger than max_bytes goes alone; a batch closes before it would overflow
    assert calls == [["aaaa"], ["bb", "cc"], ["dddddddd"], ["e", "ff", "g"]]


async def test_group_by_never_mixes_groups() -> None:
    calls, work = recorder()
    items = [3, 10, 5, 12, 7, 14, 9, 1]
    result = await scatter_map(
        work, items, batch=Batch(group_by=lambda x: x % 2, max_items=2), max_concurrent=3
    )
    assert result == [f"r{x}" for x in items]
    for call in calls:
        assert len({x % 2 for x in call}) == 1 and len(call) <= 2
    assert sorted(x for call in calls for x in call) == sorted(items)


async def test_batch_fn() -> None:
    calls, work = recorder()

    def evens_then_odds(items: list[int]) -> list[list[int]]:
        return [[x for x in items if x % 2 == 0], [x for x in items if x % 2]]

    result = await scatter_map(work, range(6), batch=Batch(batch_fn=evens_then_odds))
    assert result == [f"r{i}" for i in range(6)]
    assert sorted(calls) == [[0, 2, 4], [1, 3, 5]]


async def test_batch_fn_must_place_every_item_once() -> None:
    _, work = recorder()
    with pytest.raises(ValueError, match="left 1 of 3 items out"):
        await scatter_map(work, [1, 2, 3], batch=Batch(batch_fn=lambda items: [items[:2]]))
    with pytest.raises(ValueError, match="not in the source"):
        await scatter_map(work, [1, 2, 3], batch=Batch(batch_fn=lambda items: [[1, 2, 3, 4]]))


async def test_streaming_batches_from_a_generator() -> None:
    def numbers() -> Iterator[int]:
        yield from range(7)

    seen: list[tuple[int | None, int | None]] = []

    @fs.asset
    @scatter(items=lambda deps: numbers(), batch=Batch(max_items=3), max_concurrent=2)
    async def streamed(ctx: fs.Context, item: list[int]) -> list[int]:
        seen.append((ctx.batch_index, ctx.batch_count))
        return item

    result = await fs.materialize([streamed])
    assert result["streamed"] == list(range(7))
    assert sorted(seen) == [(0, None), (1, None), (2, None)]  # the count is not known ahead


async def test_fail_batch_fails_every_item_of_the_batch() -> None:
    async def work(items: list[int]) -> list[int]:
        if 4 in items:
            raise ValueError("bad batch")
        return items

    result = await scatter_map(
        work, range(9), batch=Batch(max_items=3), tolerated_failure=3, max_concurrent=2
    )
    assert result == [0, 1, 2, 6, 7, 8]
    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(work, range(9), batch=Batch(max_items=3), tolerated_failure=2)
    assert caught.value.failed == 3
    assert {key for key, _ in caught.value.first_errors} == {"3", "4", "5"}


async def test_collect_errors_fails_only_the_item_and_retries_it_alone() -> None:
    calls: list[list[int]] = []

    async def work(items: list[int]) -> list[Any]:
        calls.append(list(items))
        first = len(calls) == 1
        return [ValueError(f"odd {x}") if x % 2 and first else x for x in items]

    result = await scatter_map(
        work,
        range(4),
        batch=Batch(max_items=4, on_item_error="collect_errors"),
        retry=fs.Retry(attempts=2, backoff=0),
    )
    assert result == [0, 1, 2, 3]  # the odd ones succeed when retried, in a smaller batch
    assert calls == [[0, 1, 2, 3], [1, 3]]


async def test_collect_errors_counts_failures_per_item() -> None:
    async def work(items: list[int]) -> list[Any]:
        return [KeyError(x) if x == 2 else x for x in items]

    result = await scatter_map(
        work,
        range(6),
        batch=Batch(max_items=3, on_item_error="collect_errors"),
        tolerated_failure=1,
    )
    assert result == [0, 1, 3, 4, 5]


async def test_wrong_result_shape_is_a_batch_error() -> None:
    async def work(items: list[int]) -> int:
        return sum(items)

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(work, range(4), batch=Batch(max_items=2))
    assert "BatchResultError" in caught.value.first_errors[0][1]
    assert "sequence of 2 results" in caught.value.first_errors[0][1]
    assert issubclass(BatchResultError, TypeError)


async def test_batch_input_value_and_streaming_gather_with_groups() -> None:
    async def work(items: list[int]) -> list[int]:
        return [x * 2 for x in items]

    async def total(results: AsyncIterator[tuple[str, int]]) -> list[str]:
        return [key async for key, _ in results]

    def numbers() -> Iterator[int]:
        yield from range(500)

    keys = await scatter_map(
        work,
        numbers(),
        batch=Batch(group_by=lambda x: x % 7, max_items=50, batch_input={"shared": True}),
        gather=total,
        max_concurrent=2,
    )
    assert keys == [str(i) for i in range(500)]  # no deadlock; gathered in source order


async def test_batch_concurrency_is_bounded() -> None:
    running = 0
    peak = 0

    async def work(items: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0)
        running -= 1
        return items

    await scatter_map(work, range(100), batch=Batch(max_items=3), max_concurrent=4)
    assert peak == 4


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "needs max_items"),
        ({"max_items": 0}, "max_items"),
        ({"max_bytes": 10}, "needs size="),
        ({"max_items": 2, "on_item_error": "ignore"}, "on_item_error"),
        ({"group_by": "region"}, "group_by"),
    ],
)
def test_invalid_batch_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Batch(**options)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({}, "max_items"),
        ({"max_items": 0}, "max_items"),
        ({"max_items": True}, "max_items"),
        ({"max_items": "3"}, "max_items"),
        ({"max_bytes": -1, "size": len}, "max_bytes"),
        ({"max_bytes": 10}, "size"),
        ({"max_items": 2, "size": 4}, "size"),
        ({"max_items": 2, "batch_fn": [1]}, "batch_fn"),
        ({"max_items": 2, "on_item_error": ["collect_errors"]}, "on_item_error"),
    ],
)
def test_invalid_batch_options_are_definition_errors_naming_the_option(
    options: dict[str, Any], option: str
) -> None:
    with pytest.raises(fs.DefinitionError, match=option) as info:
        Batch(**options)
    assert isinstance(info.value, InvalidBatchError) and info.value.option == option
