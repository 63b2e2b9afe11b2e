"""How a scatter asset's function is called per item: the arguments by position or by
name (decided once per scatter), the item's context made from the asset's, and the key
made from the position only when it is read."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.scatter import ItemContext, ScatterFailureThresholdExceeded, scatter

Seen = list[tuple[Any, ...]]


def _check(ctx: fs.Context, item: int, seen: Seen) -> int:
    assert isinstance(ctx, ItemContext)
    assert fs.current_context() is ctx
    seen.append((item, ctx.scatter_key, ctx.asset))
    return item * 10


def _shapes() -> Iterator[tuple[str, Callable[[Seen], fs.AssetDef[..., Any]]]]:
    """Scatter assets whose functions take their arguments in different shapes."""

    def ctx_item(seen: Seen) -> fs.AssetDef[..., Any]:
        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def shaped(ctx: fs.Context, item: int) -> int:
            return _check(ctx, item, seen)

        return shaped

    def item_ctx(seen: Seen) -> fs.AssetDef[..., Any]:
        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def shaped(item: int, context: fs.Context) -> int:
            return _check(context, item, seen)

        return shaped

    def item_only(seen: Seen) -> fs.AssetDef[..., Any]:
        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def shaped(item: int) -> int:
            return _check(fs.current_context(), item, seen)

        return shaped

    def keyword_only(seen: Seen) -> fs.AssetDef[..., Any]:
        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def shaped(*, item: int, ctx: fs.Context) -> int:
            return _check(ctx, item, seen)

        return shaped

    def wrapped(seen: Seen) -> fs.AssetDef[..., Any]:
        def keywords_only(
            fn: Callable[..., Awaitable[int]],
        ) -> Callable[..., Awaitable[int]]:
            @functools.wraps(fn)
            async def wrapper(**kwargs: Any) -> int:  # takes no positional argument
                return await fn(**kwargs)

            return wrapper

        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        @keywords_only
        async def shaped(ctx: fs.Context, item: int) -> int:
            return _check(ctx, item, seen)

        return shaped

    def sync(seen: Seen) -> fs.AssetDef[..., Any]:
        @fs.asset(name="shaped")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        def shaped(ctx: fs.Context, item: int) -> int:
            return _check(ctx, item, seen)

        return shaped

    yield from {
        "ctx_item": ctx_item,
        "item_ctx": item_ctx,
        "item_only": item_only,
        "keyword_only": keyword_only,
        "wrapped": wrapped,
        "sync": sync,
    }.items()


@pytest.mark.parametrize(("shape", "make"), list(_shapes()), ids=[name for name, _ in _shapes()])
async def test_every_function_shape_gets_its_item_and_context(
    shape: str, make: Callable[[Seen], fs.AssetDef[..., Any]]
) -> None:
    seen: Seen = []
    result = await fs.materialize([make(seen)])
    assert result["shaped"] == [0, 10, 20, 30, 40]
    assert sorted(seen) == [(i, str(i), "shaped") for i in range(5)]


async def test_inputs_with_the_context_and_item() -> None:
    @fs.asset
    def factor() -> int:
        return 3

    @fs.asset
    @scatter(items=lambda deps: range(4), max_concurrent=2)
    async def scaled(ctx: fs.Context, factor: int, item: int) -> tuple[str | None, int]:
        return ctx.scatter_key, item * factor

    result = await fs.materialize([factor, scaled])
    assert result["scaled"] == [("0", 0), ("1", 3), ("2", 6), ("3", 9)]


async def test_items_of_unknown_count_keep_their_order_and_keys() -> None:
    def generated(deps: Any) -> Iterator[int]:
        yield from range(7)

    @fs.asset
    @scatter(items=generated, max_concurrent=3, page_size=2)
    async def streamed(ctx: fs.Context, item: int) -> tuple[str | None, int]:
        return ctx.scatter_key, item

    result = await fs.materialize([streamed])
    assert result["streamed"] == [(str(i), i) for i in range(7)]


async def test_failures_are_listed_by_position_and_the_threshold_stops_the_items() -> None:
    started: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(100), max_concurrent=1, tolerated_failure=1)
    async def fragile(ctx: fs.Context, item: int) -> int:
        started.append(item)
        if item in (2, 4):
            raise ValueError(f"bad {item}")
        return item

    result = await fs.materialize([fragile], raise_on_error=False)
    assert started == [0, 1, 2, 3, 4]  # nothing starts once the second failure is counted
    record = result.records["fragile"]
    assert record.error_type == "ScatterFailureThresholdExceeded"
    assert record.metadata["scatter"]["failures"] == [
        {"key": "2", "error": "ValueError: bad 2"},
        {"key": "4", "error": "ValueError: bad 4"},
    ]
    with pytest.raises(ScatterFailureThresholdExceeded):
        await fs.materialize([fragile])


async def test_an_item_context_shares_the_assets_fields() -> None:
    contexts: list[fs.Context] = []

    @fs.asset
    @scatter(items=lambda deps: ["a", "b"], max_concurrent=1)
    async def shared(ctx: fs.Context, item: str) -> str:
        contexts.append(ctx)
        ctx.add_metadata({f"saw_{item}": True})
        return item

    async with fs.Runtime(resources={"shop": "the shop"}) as runtime:
        result = await runtime.materialize([shared])
    first, second = contexts
    assert (first.scatter_key, second.scatter_key) == ("0", "1")
    for ctx in contexts:
        assert (ctx.asset, ctx.partition, ctx.run_id, ctx.attempt) == (
            "shared",
            None,
            result.run_id,
            1,
        )
        assert ctx.resources.shop == "the shop"
        assert ctx.runtime is runtime
        assert ctx.metadata["saw_a"] is True and ctx.metadata["saw_b"] is True
    assert first.log is first.log and first.log is not second.log
    assert first.log.extra == {
        "asset": "shared",
        "partition": None,
        "run_id": result.run_id,
        "scatter_key": "0",
    }
    with pytest.raises(AttributeError, match="shares its asset's context"):
        first.asset = "other"  # read-only on an item's context


def test_an_item_context_made_from_a_position_or_a_key() -> None:
    parent = fs.Context(asset="parent", partition="p", run_id="r", attempt=2)
    by_position = ItemContext.of(parent, 7)
    assert by_position.scatter_key == "7" and by_position.scatter_key.__class__ is str
    assert repr(by_position) == (
        "ItemContext(asset='parent', partition='p', run_id='r', scatter_key='7', attempt=2)"
    )
    by_key = ItemContext.of(parent, "order-1")
    assert by_key.scatter_key == "order-1"
    assert (by_key.batch_index, by_key.batch_count, by_key.batch_input) == (None, None, None)
    by_key.scatter_key = "order-2"
    assert by_key.scatter_key == "order-2"
    assert by_key.log_fields()["scatter_key"] == "order-2"
