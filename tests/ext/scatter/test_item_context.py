"""The scatter plugin's item context: an ``fs.Context`` with the item's key and batch."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.scatter import Batch, ItemContext, scatter


async def test_each_item_gets_an_item_context_sharing_the_assets_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[tuple[str, str, bool]] = []

    @fs.asset
    @scatter(items=lambda deps: ["a", "b"], key=lambda item: f"k-{item}")
    async def shout(ctx: fs.Context, item: str) -> str:
        assert isinstance(ctx, ItemContext) and fs.current_context() is ctx
        seen.append((ctx.scatter_key, repr(ctx), ctx.batch_index is None))
        ctx.add_metadata({f"saw_{item}": True})
        ctx.log.info("item %s", item)
        return item.upper()

    caplog.set_level(logging.INFO, logger="flowstone")
    result = await fs.materialize([shout])
    assert result["shout"] == ["A", "B"]
    run = result.run_id
    assert sorted(seen) == [
        ("k-a", f"ItemContext(asset='shout', run_id={run!r}, scatter_key='k-a', attempt=1)", True),
        ("k-b", f"ItemContext(asset='shout', run_id={run!r}, scatter_key='k-b', attempt=1)", True),
    ]
    metadata = result.records["shout"].metadata
    assert metadata["saw_a"] is True and metadata["saw_b"] is True
    lines = [r.getMessage() for r in caplog.records if "item " in r.getMessage()]
    assert any("scatter_key=k-a" in line and "asset=shout" in line for line in lines)
    assert {getattr(r, "scatter_key", None) for r in caplog.records} >= {"k-a", "k-b"}


async def test_a_batch_context_has_its_batch() -> None:
    seen: list[tuple[Any, ...]] = []

    @fs.asset
    @scatter(items=lambda deps: range(5), batch=Batch(max_items=2, batch_input="shared"))
    async def batched(ctx: fs.Context, item: list[int]) -> list[int]:
        seen.append((ctx.batch_index, ctx.batch_count, ctx.batch_input, item))
        return item

    await fs.materialize([batched])
    assert sorted(seen) == [
        (0, 3, "shared", [0, 1]),
        (1, 3, "shared", [2, 3]),
        (2, 3, "shared", [4]),
    ]


async def test_a_plain_assets_context_has_no_item_fields() -> None:
    @fs.asset
    async def plain(ctx: fs.Context) -> tuple[Any, ...]:
        assert not isinstance(ctx, ItemContext)
        return (ctx.scatter_key, ctx.batch_index, ctx.batch_count, ctx.batch_input, repr(ctx))

    result = await fs.materialize([plain])
    key, index, count, shared, shown = result["plain"]
    assert (key, index, count, shared) == (None, None, None, None)
    assert shown == f"Context(asset='plain', run_id={result.run_id!r}, attempt=1)"
