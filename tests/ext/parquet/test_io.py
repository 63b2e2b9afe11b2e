"""ParquetIOManager on a local root: values, layout, atomic replacement, options, errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flowstone as fs
from flowstone.ext.parquet import ParquetIOManager
from flowstone.protocols import IOContext, IOManager, PartitionLister

TABLE = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "total": [1.5, 2.5, 3.5]})


def ctx(partition: str | None = None, asset: str = "orders", **options: Any) -> IOContext:
    return IOContext(asset, partition, options=options)


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def reader_of(
    table: pa.Table, *, chunk: int = 1, fail_after: int | None = None
) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(table.to_batches(max_chunksize=chunk)):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("the source broke")
            yield batch

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def test_it_fits_the_protocols(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    assert isinstance(manager, IOManager)
    assert isinstance(manager, PartitionLister)
    assert repr(manager) == f"ParquetIOManager({str(tmp_path)!r})"


async def test_a_table_round_trips(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("2025-01-02"), TABLE)
    assert (await manager.load(ctx("2025-01-02"))).equals(TABLE)


async def test_a_record_batch_comes_back_as_a_table(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx(), TABLE.to_batches()[0])
    assert (await manager.load(ctx())).equals(TABLE)


async def test_a_reader_is_written_batch_by_batch_in_row_groups(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    big = pa.table({"n": list(range(10_000))})
    meta = await manager.store(ctx(), reader_of(big, chunk=100))
    assert (await manager.load(ctx())).equals(big)
    assert meta["parquet"]["rows"] == 10_000
    # 100 batches of 100 rows make one row group, not a hundred.
    assert pq.ParquetFile(tmp_path / "orders" / "data.parquet").num_row_groups == 1


async def test_pyarrow_work_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        seen.append(threading.get_ident())
        yield from TABLE.to_batches()

    await ParquetIOManager(tmp_path).store(
        ctx(), pa.RecordBatchReader.from_batches(TABLE.schema, batches())
    )
    assert seen and loop_thread not in seen


async def test_a_dataframe_round_trips_when_pandas_is_installed(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": [1, 2], "name": ["a", "b"]})
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx(), frame)
    loaded = await manager.load(ctx())
    assert isinstance(loaded, pd.DataFrame)
    pd.testing.assert_frame_equal(loaded, frame)
    subset = await manager.load(ctx(columns=["name"]))
    assert list(subset.columns) == ["name"]


async def test_the_layout_on_disk_is_hive_style(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("2025-01-02"), TABLE)
    await manager.store(ctx("eu/west"), TABLE)
    await manager.store(ctx("café"), TABLE)
    await manager.store(ctx(None, asset="totals"), TABLE)
    assert files(tmp_path) == [
        "orders/partition=2025-01-02/part-0.parquet",
        "orders/partition=caf%C3%A9/part-0.parquet",
        "orders/partition=eu%2Fwest/part-0.parquet",
        "totals/data.parquet",
    ]
    assert pq.read_table(tmp_path / "orders/partition=2025-01-02/part-0.parquet").equals(TABLE)


async def test_pyarrow_datasets_read_the_partitions_back_with_their_keys(tmp_path: Path) -> None:
    import pyarrow.dataset as ds

    manager = ParquetIOManager(tmp_path)
    for key in ("2025-01-02", "eu/west", "café"):
        await manager.store(ctx(key), TABLE.slice(0, 1))
    dataset = ds.dataset(
        tmp_path / "orders",
        partitioning=ds.partitioning(pa.schema([("partition", pa.string())]), flavor="hive"),
    )
    keys = sorted(dataset.to_table(columns=["partition"])["partition"].to_pylist())
    assert keys == ["2025-01-02", "café", "eu/west"]


async def test_store_returns_the_schema_for_the_record(tmp_path: Path) -> None:
    meta = await ParquetIOManager(tmp_path).store(ctx("2025-01-02"), TABLE)
    path = tmp_path / "orders" / "partition=2025-01-02" / "part-0.parquet"
    assert meta == {
        "parquet": {
            "path": str(path),
            "rows": 3,
            "bytes": path.stat().st_size,
            "schema": [
                {"name": "id", "type": "int64", "nullable": True},
                {"name": "name", "type": "string", "nullable": True},
                {"name": "total", "type": "double", "nullable": True},
            ],
        }
    }


async def test_a_value_it_cannot_store_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    manager = ParquetIOManager(tmp_path)
    with pytest.raises(fs.StorageError, match=r"asset 'orders' partition 'p1'.*builtins\.dict"):
        await manager.store(ctx("p1"), {"id": [1]})
    assert files(tmp_path) == []


async def test_a_reader_failing_midway_leaves_the_previous_value(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("p1"), TABLE)
    with pytest.raises(fs.StorageError, match=r"asset 'orders' partition 'p1'") as caught:
        await manager.store(ctx("p1"), reader_of(TABLE, fail_after=2))
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert (await manager.load(ctx("p1"))).equals(TABLE)
    assert files(tmp_path) == ["orders/partition=p1/part-0.parquet"]  # no temporary file left


async def test_a_failing_first_write_leaves_nothing(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    with pytest.raises(fs.StorageError):
        await manager.store(ctx("p1"), reader_of(TABLE, fail_after=1))
    assert not await manager.exists(ctx("p1"))
    assert await manager.list_partitions("orders") == []
    assert files(tmp_path) == []


async def test_a_new_value_replaces_the_old_one(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("p1"), TABLE)
    await manager.store(ctx("p1"), TABLE.slice(1))
    assert (await manager.load(ctx("p1"))).num_rows == 2


async def test_a_column_subset_is_read(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("p1"), TABLE)
    subset = await manager.load(ctx("p1", columns=["total", "id"]))
    assert subset.column_names == ["total", "id"]
    assert subset.equals(TABLE.select(["total", "id"]))


async def test_an_unknown_column_is_named(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("p1"), TABLE)
    with pytest.raises(fs.StorageError, match=r"partition 'p1': no column 'nope'.*id, name, total"):
        await manager.load(ctx("p1", columns=["id", "nope"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colums": ["id"]}, r"no load option 'colums'"),
        ({"columns": "id"}, r"'columns' must be a list of column names"),
        ({"columns": [1]}, r"'columns' must be a list of column names"),
    ],
)
async def test_bad_load_options_are_named(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("p1"), TABLE)
    with pytest.raises(fs.ConfigurationError, match=message):
        await manager.load(ctx("p1", **options))


async def test_exists_delete_and_list_partitions(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    assert await manager.list_partitions("orders") == []
    for key in ("2025-01-03", "eu/west", "2025-01-02"):
        await manager.store(ctx(key), TABLE)
    await manager.store(ctx(None), TABLE)
    assert await manager.list_partitions("orders") == [None, "2025-01-02", "2025-01-03", "eu/west"]
    assert await manager.exists(ctx("eu/west"))
    assert not await manager.exists(ctx("2025-01-04"))

    await manager.delete(ctx("eu/west"))
    await manager.delete(ctx("eu/west"))  # a missing value is not an error
    await manager.delete(ctx(None))
    assert not await manager.exists(ctx("eu/west"))
    assert await manager.list_partitions("orders") == ["2025-01-02", "2025-01-03"]
    assert not (tmp_path / "orders" / "partition=eu%2Fwest").exists()
    with pytest.raises(fs.ValueNotFoundError):
        await manager.load(ctx("eu/west"))


async def test_files_that_are_not_values_are_not_partitions(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    await manager.store(ctx("~"), TABLE)
    stray = [
        "orders/partition=%7E/part-0.parquet",  # not the canonical spelling of "~"
        "orders/partition=%FF/part-0.parquet",  # not UTF-8
        "orders/partition=x/.part-0.parquet.0123.tmp",  # a write under way
        "orders/partition=y/other.parquet",
        "orders/_SUCCESS",
    ]
    for name in stray:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert await manager.list_partitions("orders") == ["~"]


async def test_load_of_a_missing_value_raises_value_not_found(tmp_path: Path) -> None:
    with pytest.raises(fs.ValueNotFoundError, match=r"asset 'orders' partition 'p1'"):
        await ParquetIOManager(tmp_path / "none").load(ctx("p1"))


async def test_a_corrupt_file_is_a_storage_error_with_its_cause(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path)
    path = tmp_path / "orders" / "data.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not parquet at all")
    with pytest.raises(fs.StorageError, match=r"asset 'orders': parquet: could not load") as caught:
        await manager.load(ctx())
    assert isinstance(caught.value.__cause__, pa.ArrowException)


async def test_a_root_that_is_a_file_is_a_storage_error(tmp_path: Path) -> None:
    root = tmp_path / "file"
    root.write_text("x")
    with pytest.raises(fs.StorageError, match=r"asset 'orders': parquet: could not store"):
        await ParquetIOManager(root).store(ctx(), TABLE)


@pytest.mark.parametrize(
    ("root", "options", "message"),
    [
        ("", {}, r"root must be a path"),
        ("gs://bucket/x", {}, r"only local paths and s3:// URIs"),
        ("s3:///x", {}, r"names no bucket"),
        ("./tables", {"endpoint_url": "http://127.0.0.1:9000"}, r"for s3:// roots"),
        ("s3://lake", {"endpoint_url": "ftp://host"}, r"not an http\(s\) URL"),
        ("s3://lake", {"s3_options": {"no_such_option": 1}}, r"bad S3 options"),
    ],
)
def test_bad_configuration_is_refused(root: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(fs.ConfigurationError, match=message):
        ParquetIOManager(root, **options)


async def test_write_options_reach_the_parquet_writer(tmp_path: Path) -> None:
    manager = ParquetIOManager(tmp_path, write_options={"compression": "zstd"})
    await manager.store(ctx(), TABLE)
    column = pq.ParquetFile(tmp_path / "orders" / "data.parquet").metadata.row_group(0).column(0)
    assert column.compression == "ZSTD"
