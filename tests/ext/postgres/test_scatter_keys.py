"""Keyed durable scatters: a duplicate key fails the asset before the items of its page
run, with the scatter's typed error naming the key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.scatter import DuplicateScatterKeyError, scatter

asyncpg = pytest.importorskip("asyncpg")

from flowstone.ext.postgres import PostgresStore  # noqa: E402 - after the skip
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator  # noqa: E402

pytestmark = pytest.mark.postgres


@pytest.fixture
async def durable(pg_store: PostgresStore) -> AsyncIterator[fs.Runtime]:
    """A runtime whose scatter coordinator is the durable one."""
    runtime = fs.Runtime(store=pg_store)
    runtime.coordinators.register("scatter", PostgresScatterCoordinator(pg_store, lease=2))
    async with runtime:
        yield runtime


@pytest.mark.parametrize("max_concurrent", [1, 4, 64])
async def test_a_duplicate_in_the_first_page_fails_before_any_item_runs(
    durable: fs.Runtime, pg_conn: Any, pg_schema: str, max_concurrent: int
) -> None:
    runs: list[int] = []
    items = [{"id": i} for i in range(300)] + [{"id": 7}]

    @fs.asset
    @scatter(items=lambda deps: items, key=lambda o: str(o["id"]), max_concurrent=max_concurrent)
    async def keyed(item: dict[str, int]) -> int:
        runs.append(item["id"])
        return item["id"]

    with pytest.raises(fs.AssetExecutionError, match="duplicate scatter key '7'") as caught:
        await durable.materialize([keyed])
    assert isinstance(caught.value.__cause__, DuplicateScatterKeyError)
    assert caught.value.__cause__.index == 300
    assert runs == []
    stored = await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".scatter_items')
    assert stored == 0


async def test_a_duplicate_of_an_earlier_page_fails_before_its_page_runs(
    durable: fs.Runtime,
) -> None:
    runs: list[int] = []
    items = [{"id": i} for i in range(25)] + [{"id": 3}] + [{"id": i} for i in range(25, 40)]

    @fs.asset
    @scatter(items=lambda deps: items, key=lambda o: str(o["id"]), page_size=10)
    async def keyed(item: dict[str, int]) -> int:
        runs.append(item["id"])
        return item["id"]

    with pytest.raises(fs.AssetExecutionError, match="duplicate scatter key '3'"):
        await durable.materialize([keyed])
    assert runs.count(3) <= 1
    assert not set(runs) & {20, 21, 22, 23, 24, *range(25, 40)}  # its page never ran
