"""ParquetIOManager on an s3:// root, against moto's HTTP server (no patched clients)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

import flowstone as fs
from flowstone.ext.parquet import ParquetIOManager
from flowstone.protocols import IOContext

from .conftest import S3Server

pytestmark = pytest.mark.s3

TABLE = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})


def ctx(partition: str | None = None, **options: Any) -> IOContext:
    return IOContext("orders", partition, options=options)


def keys(server: S3Server, bucket: str) -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
    return sorted(o["Key"] for o in listed.get("Contents", []))


def value_keys(server: S3Server, bucket: str) -> list[str]:
    """Object keys that hold data (pyarrow leaves empty ``dir/`` markers on delete)."""
    return [k for k in keys(server, bucket) if not k.endswith("/")]


async def test_values_round_trip_under_the_hive_layout(s3_server: S3Server, bucket: str) -> None:
    manager = ParquetIOManager(f"s3://{bucket}/tables", endpoint_url=s3_server.endpoint_url)
    meta = await manager.store(ctx("eu/west"), TABLE)
    await manager.store(ctx(None), TABLE)
    assert value_keys(s3_server, bucket) == [
        "tables/orders/data.parquet",
        "tables/orders/partition=eu%2Fwest/part-0.parquet",
    ]
    assert (
        meta["parquet"]["path"] == f"s3://{bucket}/tables/orders/partition=eu%2Fwest/part-0.parquet"
    )
    assert meta["parquet"]["rows"] == 3
    assert (await manager.load(ctx("eu/west"))).equals(TABLE)
    assert (await manager.load(ctx("eu/west", columns=["name"]))).equals(TABLE.select(["name"]))


async def test_a_reader_is_streamed_to_the_object(s3_server: S3Server, bucket: str) -> None:
    manager = ParquetIOManager(f"s3://{bucket}", endpoint_url=s3_server.endpoint_url)
    big = pa.table({"n": list(range(50_000))})
    await manager.store(
        ctx("p"), pa.RecordBatchReader.from_batches(big.schema, big.to_batches(1000))
    )
    assert (await manager.load(ctx("p"))).equals(big)


async def test_a_failing_write_leaves_the_previous_object(s3_server: S3Server, bucket: str) -> None:
    manager = ParquetIOManager(f"s3://{bucket}/t", endpoint_url=s3_server.endpoint_url)
    await manager.store(ctx("p1"), TABLE)

    def batches() -> Iterator[pa.RecordBatch]:
        yield TABLE.to_batches()[0]
        raise RuntimeError("the source broke")

    with pytest.raises(fs.StorageError, match=r"partition 'p1'.*the source broke"):
        await manager.store(ctx("p1"), pa.RecordBatchReader.from_batches(TABLE.schema, batches()))
    assert (await manager.load(ctx("p1"))).equals(TABLE)
    assert value_keys(s3_server, bucket) == ["t/orders/partition=p1/part-0.parquet"]


async def test_exists_delete_and_list_partitions(s3_server: S3Server, bucket: str) -> None:
    manager = ParquetIOManager(f"s3://{bucket}/t", endpoint_url=s3_server.endpoint_url)
    for key in ("2025-01-02", "café", "2025-01-01"):
        await manager.store(ctx(key), TABLE)
    assert await manager.list_partitions("orders") == ["2025-01-01", "2025-01-02", "café"]
    assert await manager.exists(ctx("café"))
    await manager.delete(ctx("café"))
    await manager.delete(ctx("café"))
    assert not await manager.exists(ctx("café"))
    assert await manager.list_partitions("orders") == ["2025-01-01", "2025-01-02"]
    with pytest.raises(fs.ValueNotFoundError):
        await manager.load(ctx("café"))


async def test_the_endpoint_comes_from_aws_endpoint_url(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    manager = ParquetIOManager(f"s3://{bucket}")
    await manager.store(ctx(), TABLE)
    assert value_keys(s3_server, bucket) == ["orders/data.parquet"]


async def test_a_missing_bucket_is_a_storage_error_not_a_missing_value(
    s3_server: S3Server,
) -> None:
    manager = ParquetIOManager("s3://no-such-bucket/t", endpoint_url=s3_server.endpoint_url)
    where = (
        r"asset 'orders' partition 'p1'.*s3://no-such-bucket/t/orders/partition=p1/part-0\.parquet"
    )
    with pytest.raises(fs.StorageError, match=where + r".*does not exist"):
        await manager.store(ctx("p1"), TABLE)
    for attempt in (manager.load(ctx("p1")), manager.exists(ctx("p1"))):
        with pytest.raises(
            fs.StorageError, match=where + r".*bucket 'no-such-bucket' does not exist"
        ) as caught:
            await attempt
        assert not isinstance(caught.value, fs.ValueNotFoundError)
