"""Durable scatter results PostgreSQL cannot store fail their own item only, with a typed
error, whatever the path their row takes; the other items' results are stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.scatter import scatter

asyncpg = pytest.importorskip("asyncpg")

from flowstone.ext.postgres import PostgresStore  # noqa: E402 - after the skip
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator  # noqa: E402

pytestmark = pytest.mark.postgres


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cycle() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


BAD_RESULTS = {
    "lone surrogate": lambda: "\ud800",
    "lone surrogate inside": lambda: {"name": ["ok", "x\udc00y"]},
    "lone surrogate key": lambda: {"\udfff": 1},
    "huge int": lambda: 10**5000,
    "huge int inside": lambda: [1, 10**5000],
    "deep nesting": lambda: _nested(5000),
    "a cycle": _cycle,
}


@pytest.fixture
async def durable(pg_store: PostgresStore) -> AsyncIterator[fs.Runtime]:
    """A runtime whose scatter coordinator is the durable one."""
    runtime = fs.Runtime(store=pg_store)
    runtime.coordinators.register("scatter", PostgresScatterCoordinator(pg_store, lease=2))
    async with runtime:
        yield runtime


@pytest.mark.parametrize("keyed", [False, True], ids=["run-then-stored", "claimed"])
@pytest.mark.parametrize("bad", list(BAD_RESULTS))
async def test_a_result_that_cannot_be_stored_fails_its_item_only(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str, bad: str, keyed: bool
) -> None:
    make_bad = BAD_RESULTS[bad]

    @fs.asset
    @scatter(
        items=lambda deps: range(40),
        key=(lambda i: f"k{i}") if keyed else None,
        max_concurrent=4,
        tolerated_failure=1,
    )
    async def results(item: int) -> Any:
        return make_bad() if item == 13 else item

    result = await durable.materialize([results])
    assert result["results"] == [i for i in range(40) if i != 13]
    summary = result.records["results"].metadata["scatter"]
    assert (summary["succeeded"], summary["failed"]) == (39, 1)
    (failure,) = summary["failures"]
    assert failure["key"] == ("k13" if keyed else "13")
    assert failure["error"].startswith("StorageError: ") and "'results'" in failure["error"]
    rows = await pg_conn.fetch(f'SELECT idx, status FROM "{pg_schema}".scatter_items')
    assert sorted((r["idx"], r["status"]) for r in rows) == [
        (i, "failed" if i == 13 else "succeeded") for i in range(40)
    ]


async def test_too_many_unstorable_results_exceed_the_threshold(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(10), max_concurrent=2, tolerated_failure=1)
    async def surrogates(item: int) -> str:
        return "\ud800" if item in (2, 7) else str(item)

    result = await durable.materialize([surrogates], raise_on_error=False)
    assert result.records["surrogates"].error_type == "ScatterFailureThresholdExceeded"


@pytest.mark.parametrize(
    "bad", ["\ud800", 10**5000, [_nested(5000)]], ids=["surrogate", "int", "deep"]
)
async def test_an_item_that_cannot_be_stored_is_refused_naming_it(
    durable: fs.Runtime, bad: Any
) -> None:
    runs: list[Any] = []

    @fs.asset
    @scatter(items=lambda deps: [1, bad], max_concurrent=2)
    async def odd(item: Any) -> int:
        runs.append(item)
        return 1

    with pytest.raises(fs.AssetExecutionError) as caught:
        await durable.materialize([odd])
    assert isinstance(caught.value.__cause__, fs.StorageError)
    assert "'odd'" in str(caught.value) and "item '1'" in str(caught.value)
    assert bad not in runs
