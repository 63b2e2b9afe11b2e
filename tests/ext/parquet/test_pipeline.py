"""A partitioned pipeline through ``fs.Runtime(io_managers={"parquet": ParquetIOManager(...)})``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

import flowstone as fs
from flowstone.ext.parquet import ParquetIOManager
from plugin_imports import import_error_without

DAYS = fs.DailyPartitions(start="2025-01-01", end="2025-01-05")


@fs.asset(io_manager="parquet", partitions=DAYS)
async def orders(ctx: fs.Context) -> pa.Table:
    day = int(ctx.partition[-2:]) if ctx.partition else 0
    return pa.table({"id": [day * 10 + i for i in range(3)], "amount": [1.0, 2.0, 3.0 * day]})


@fs.asset(io_manager="parquet", partitions=DAYS)
async def large(orders: pa.Table) -> pa.Table:
    return orders.filter(pc.greater(orders["amount"], 2.5))


async def test_a_partitioned_pipeline_stores_and_loads_through_the_runtime(tmp_path: Path) -> None:
    async with fs.Runtime(io_managers={"parquet": ParquetIOManager(tmp_path)}) as rt:
        result = await rt.materialize([orders, large], partition="2025-01-02")
        assert result.ok
        assert result["large"].to_pydict() == {"id": [22], "amount": [6.0]}
        await rt.materialize([orders, large], partition="2025-01-03")

        assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
            "large/partition=2025-01-02/part-0.parquet",
            "large/partition=2025-01-03/part-0.parquet",
            "orders/partition=2025-01-02/part-0.parquet",
            "orders/partition=2025-01-03/part-0.parquet",
        ]
        loaded = await fs.load(orders, "2025-01-03", runtime=rt)
        assert loaded.num_rows == 3
        ids = await fs.load(orders, "2025-01-03", options={"columns": ["id"]}, runtime=rt)
        assert ids.to_pydict() == {"id": [30, 31, 32]}

        manager = rt.io_manager_for(orders)
        assert isinstance(manager, ParquetIOManager)
        assert await manager.list_partitions("orders") == ["2025-01-02", "2025-01-03"]


async def test_the_schema_is_kept_in_the_record(tmp_path: Path) -> None:
    async with fs.Runtime(io_managers={"parquet": ParquetIOManager(tmp_path)}) as rt:
        result = await rt.materialize([orders], partition="2025-01-02")
        record = result.outcomes["orders"].record
        assert record is not None
        assert record.metadata["parquet"]["schema"] == [
            {"name": "id", "type": "int64", "nullable": True},
            {"name": "amount", "type": "double", "nullable": True},
        ]
        assert record.metadata["parquet"]["rows"] == 3
        (latest,) = await rt.history("orders", "2025-01-02")
        assert latest.metadata == record.metadata


async def test_a_value_it_cannot_store_fails_the_asset_and_writes_nothing(tmp_path: Path) -> None:
    @fs.asset(io_manager="parquet", name="orders")
    async def not_a_table() -> dict[str, list[int]]:
        return {"id": [1]}

    async with fs.Runtime(io_managers={"parquet": ParquetIOManager(tmp_path)}) as rt:
        result = await rt.materialize([not_a_table], raise_on_error=False)
    assert not result.ok
    error = result.outcomes["orders"].error
    assert error is not None and isinstance(error.__cause__, fs.StorageError)
    assert "cannot store a builtins.dict" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_importing_without_pyarrow_names_the_extra() -> None:
    assert import_error_without("pyarrow", "flowstone.ext.parquet") == (
        "MissingExtraError flowstone.ext.parquet needs pyarrow: pip install 'flowstone[parquet]'"
    )


def test_the_registry_name_resolves_to_the_class() -> None:
    from flowstone._core.registry import BUILTIN_IO_MANAGERS, import_string

    assert import_string(BUILTIN_IO_MANAGERS["parquet"]) is ParquetIOManager


async def test_dependents_of_a_reader_read_the_stored_table(tmp_path: Path) -> None:
    table = pa.table({"x": [1, 2, 3]})

    @fs.asset(io_manager="parquet")
    async def streamed() -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    @fs.asset
    async def rows(streamed: pa.Table) -> int:
        return streamed.num_rows

    async with fs.Runtime(io_managers={"parquet": ParquetIOManager(tmp_path)}) as rt:
        result = await rt.materialize([streamed, rows])
    assert result["rows"] == 3
    assert result["streamed"].equals(table)
