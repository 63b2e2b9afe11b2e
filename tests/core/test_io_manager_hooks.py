"""What an IO manager can add to a run: record metadata from ``store``, options for ``load``."""

from __future__ import annotations

from typing import Any

import flowstone as fs
from flowstone.protocols import IOContext


class Describing:
    """Keeps values in a dict; ``store`` returns whatever it was told to describe them with."""

    def __init__(self, described: Any) -> None:
        self.described = described
        self.values: dict[tuple[str, str | None], Any] = {}
        self.load_options: list[dict[str, Any]] = []

    async def store(self, context: IOContext, value: Any) -> Any:
        self.values[context.asset, context.partition] = value
        return self.described

    async def load(self, context: IOContext) -> Any:
        self.load_options.append(dict(context.options))
        try:
            return self.values[context.asset, context.partition]
        except KeyError:
            raise fs.ValueNotFoundError(context.asset, context.partition) from None

    async def exists(self, context: IOContext) -> bool:
        return (context.asset, context.partition) in self.values

    async def delete(self, context: IOContext) -> None:
        self.values.pop((context.asset, context.partition), None)


@fs.asset(io_manager="described")
async def rows(ctx: fs.Context) -> list[int]:
    ctx.add_metadata(mine=1, rows="the asset's own")
    return [1, 2]


async def test_metadata_store_returns_lands_on_the_record_under_the_assets_own() -> None:
    manager = Describing({"rows": 2, "schema": ["n: int"]})
    async with fs.Runtime(io_managers={"described": manager}) as rt:
        result = await rt.materialize([rows])
        record = result.outcomes["rows"].record
        assert record is not None
        assert record.metadata == {"rows": "the asset's own", "schema": ["n: int"], "mine": 1}
        (stored,) = await rt.history("rows")
        assert stored.metadata == record.metadata


async def test_a_store_that_returns_no_mapping_adds_nothing() -> None:
    manager = Describing("INSERT 0 1")  # what a careless store might return
    async with fs.Runtime(io_managers={"described": manager}) as rt:
        result = await rt.materialize([rows])
        record = result.outcomes["rows"].record
        assert record is not None
        assert record.metadata == {"mine": 1, "rows": "the asset's own"}


async def test_load_options_reach_the_io_manager() -> None:
    manager = Describing(None)
    async with fs.Runtime(io_managers={"described": manager}) as rt:
        await rt.materialize([rows])
        assert await fs.load(rows, options={"columns": ["n"]}, runtime=rt) == [1, 2]
        assert await rt.load("rows") == [1, 2]
    assert manager.load_options == [{"columns": ["n"]}, {}]


class Draining(Describing):
    """Stores an iterator's items as a list, reading the iterator (as a real store would)."""

    async def store(self, context: IOContext, value: Any) -> Any:
        self.values[context.asset, context.partition] = list(value)
        return None


@fs.asset(io_manager="described")
async def stream() -> Any:
    return iter([1, 2, 3])


@fs.asset
async def counted(stream: Any) -> int:
    return len(list(stream))


async def test_dependents_of_an_iterator_get_what_was_stored_not_the_read_iterator() -> None:
    async with fs.Runtime(io_managers={"described": Draining(None)}) as rt:
        result = await rt.materialize([stream, counted])
    assert result["counted"] == 3
    assert result["stream"] == [1, 2, 3]
