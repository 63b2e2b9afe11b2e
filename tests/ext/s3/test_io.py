"""``S3IOManager`` against moto's HTTP server: layout, serializers, whole-or-nothing uploads,
errors, and one client per runtime."""

from __future__ import annotations

import json
import pickle
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.s3 import S3IOManager, S3StorageError, decode_segment, encode_segment
from flowstone.protocols import IOContext, IOManager, PartitionLister
from flowstone.testing import MotoServer
from plugin_imports import import_error_without

from .conftest import object_keys

pytestmark = pytest.mark.s3

AWKWARD = ["2025-01-02", "eu/west", "café", "", ".", "..", "a b+c%2F", "~x_y-z.", "日本/語"]
MiB = 1024 * 1024


def ctx(partition: str | None = None, asset: str = "orders", **metadata: Any) -> IOContext:
    return IOContext(asset, partition, metadata=metadata)


def head(server: MotoServer, bucket: str, key: str) -> dict[str, Any]:
    response: dict[str, Any] = server.client().head_object(Bucket=bucket, Key=key)
    return response


# -- layout and the round trip -----------------------------------------------------------


def test_the_manager_fits_the_protocols() -> None:
    manager = S3IOManager("b")
    assert isinstance(manager, IOManager)
    assert isinstance(manager, PartitionLister)


def test_keys_follow_the_documented_layout() -> None:
    manager = S3IOManager("b", "/lake/raw/")
    assert manager.key_of("orders") == "lake/raw/orders/value"
    assert manager.key_of("orders", "2025-01-02") == "lake/raw/orders/partition=2025-01-02"
    assert manager.key_of("orders", "eu/west") == "lake/raw/orders/partition=eu%2Fwest"
    assert manager.key_of("orders", "café") == "lake/raw/orders/partition=caf%C3%A9"
    assert manager.key_of("orders", "") == "lake/raw/orders/partition="
    assert S3IOManager("b").key_of("a b") == "a%20b/value"


@given(st.text())
def test_the_segment_encoding_is_reversible_and_has_no_slash(text: str) -> None:
    try:
        segment = encode_segment(text)
    except UnicodeEncodeError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return
    assert "/" not in segment
    assert decode_segment(segment) == text


async def test_store_load_exists_delete_list_with_awkward_keys(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    for i, key in enumerate(AWKWARD):
        assert not await manager.exists(ctx(key))
        await manager.store(ctx(key), {"i": i, "key": key})
    await manager.store(ctx(None), "whole")
    for i, key in enumerate(AWKWARD):
        assert await manager.exists(ctx(key))
        assert await manager.load(ctx(key)) == {"i": i, "key": key}
    assert await manager.load(ctx(None)) == "whole"
    assert await manager.list_partitions("orders") == [None, *sorted(AWKWARD)]
    assert len(object_keys(moto_server, bucket, "lake/orders/")) == len(AWKWARD) + 1
    # Objects of other tools beside the values are not partitions.
    moto_server.client().put_object(Bucket=bucket, Key="lake/orders/partition=%7e", Body=b"")
    moto_server.client().put_object(Bucket=bucket, Key="lake/orders/notes.txt", Body=b"")
    assert await manager.list_partitions("orders") == [None, *sorted(AWKWARD)]
    for key in AWKWARD:
        await manager.delete(ctx(key))
        await manager.delete(ctx(key))  # a missing value is not an error
    assert await manager.list_partitions("orders") == [None]
    assert await manager.list_partitions("other") == []
    with pytest.raises(fs.ValueNotFoundError, match="'eu/west'"):
        await manager.load(ctx("eu/west"))


async def test_listing_follows_continuation_tokens(manager: S3IOManager) -> None:
    manager.list_page_size = 7
    keys = [f"k{i:04d}" for i in range(45)]
    limiter = anyio.CapacityLimiter(32)

    async def put(key: str) -> None:
        async with limiter:
            await manager.store(ctx(key), 1)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    assert await manager.list_partitions("orders") == keys


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
async def test_any_partition_key_round_trips_through_the_bucket(
    manager: S3IOManager, key: str
) -> None:
    await manager.store(ctx(key, asset="prop"), key)
    assert await manager.load(ctx(key, asset="prop")) == key
    assert key in await manager.list_partitions("prop")
    await manager.delete(ctx(key, asset="prop"))


# -- serializers -------------------------------------------------------------------------


async def test_each_serializer_is_recorded_with_its_object(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"id": [1, 2], "name": ["a", "é"]})
    cases: list[tuple[IOContext, Any, str, str]] = [
        (ctx("json"), {"a": (1, [2, (3,)])}, "json", "application/json"),
        (ctx("bytes"), b"\x00\xff raw", "bytes", "application/octet-stream"),
        (ctx("arrow"), table, "parquet", "application/vnd.apache.parquet"),
        (ctx("pickle", serializer="pickle"), {1, 2}, "pickle", "application/x-python-pickle"),
    ]
    for context, value, serializer, content_type in cases:
        meta = await manager.store(context, value)
        assert meta["s3"]["serializer"] == serializer
        key = manager.key_of("orders", context.partition)
        assert meta["s3"]["uri"] == f"s3://{bucket}/{key}"
        info = head(moto_server, bucket, key)
        assert info["ContentType"] == content_type
        assert info["Metadata"]["flowstone-serializer"] == serializer
        loaded = await manager.load(context)
        if serializer == "parquet":
            assert loaded.equals(table)
        else:
            assert loaded == value and type(loaded) is type(value)
    # Tuples come back as tuples, the JSON body stays plain JSON.
    body = moto_server.client().get_object(Bucket=bucket, Key=manager.key_of("orders", "json"))
    assert body["Body"].read() == b'{"a":[1,[2,[3]]]}'


async def test_many_tuples_are_kept_inside_the_object(manager: S3IOManager) -> None:
    value = {f"key-{i}": (i, (i,)) for i in range(200)}
    await manager.store(ctx("t"), value)
    assert await manager.load(ctx("t")) == value


async def test_pickle_is_refused_unless_asked_for(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    with pytest.raises(S3StorageError, match="serializer") as caught:
        await manager.store(ctx("p"), {1, 2})
    error = caught.value
    assert (error.asset, error.partition, error.reason) == ("orders", "p", "unserialisable")
    assert error.key == "lake/orders/partition=p" and "pickle" in str(error)
    assert object_keys(moto_server, bucket) == []
    # The manager option pickles every value.
    async with S3IOManager(
        bucket, "x", endpoint_url=moto_server.endpoint_url, serializer="pickle"
    ) as pickling:
        await pickling.store(ctx("p"), {1, 2})
        assert await pickling.load(ctx("p")) == {1, 2}
    # An object someone else labelled as a pickle is never unpickled.
    moto_server.client().put_object(
        Bucket=bucket,
        Key="lake/orders/partition=foreign",
        Body=pickle.dumps([1]),
        ContentType="application/x-python-pickle",
    )
    assert await manager.load(ctx("foreign")) == pickle.dumps([1])


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(fs.ConfigurationError, match="serializer 'yaml'"):
        S3IOManager("b", serializer="yaml")
    with pytest.raises(fs.ConfigurationError, match="part_size"):
        S3IOManager("b", part_size=1024)
    with pytest.raises(fs.ConfigurationError, match="bucket"):
        S3IOManager("a/b")


async def test_a_corrupt_object_is_a_storage_error(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    moto_server.client().put_object(
        Bucket=bucket,
        Key=manager.key_of("orders", "bad"),
        Body=b"{not json",
        Metadata={"flowstone-serializer": "json"},
    )
    with pytest.raises(S3StorageError, match="as json") as caught:
        await manager.load(ctx("bad"))
    assert caught.value.reason == "corrupt"


# -- whole or nothing --------------------------------------------------------------------


def pending_uploads(server: MotoServer, bucket: str) -> list[Any]:
    uploads: list[Any] = server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


async def test_a_big_value_goes_up_in_parts(moto_server: MotoServer, bucket: str) -> None:
    async with S3IOManager(
        bucket,
        endpoint_url=moto_server.endpoint_url,
        multipart_threshold=5 * MiB,
        part_size=5 * MiB,
    ) as manager:
        value = bytes(range(256)) * (11 * MiB // 256)
        meta = await manager.store(ctx("big"), value)
        assert meta["s3"]["etag"].endswith("-3")  # three parts
        assert await manager.load(ctx("big")) == value
    assert pending_uploads(moto_server, bucket) == []


async def test_a_streamed_value_goes_up_in_parts_and_loads_as_bytes(
    manager: S3IOManager,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(12):
            yield bytes([i]) * MiB

    meta = await manager.store(ctx("stream"), chunks())
    assert meta["s3"]["etag"].endswith("-2")  # 8 MiB + 4 MiB
    assert await manager.load(ctx("stream")) == b"".join(bytes([i]) * MiB for i in range(12))


async def test_a_failed_multipart_upload_is_aborted_and_leaves_the_old_value(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    await manager.store(ctx("p"), "old")
    sent: list[int] = []

    def failing() -> Iterator[bytes]:
        for i in range(20):
            sent.append(i)
            if i == 10:  # one 8 MiB part is already uploaded
                raise RuntimeError("the source broke")
            yield b"x" * MiB

    with pytest.raises(RuntimeError, match="the source broke"):
        await manager.store(ctx("p"), failing())
    assert len(sent) == 11
    assert pending_uploads(moto_server, bucket) == []
    assert await manager.load(ctx("p")) == "old"

    def not_bytes() -> Iterator[Any]:
        yield b"x" * 9 * MiB
        yield "text"

    with pytest.raises(S3StorageError, match="must yield bytes") as caught:
        await manager.store(ctx("q"), not_bytes())
    assert caught.value.reason == "unserialisable"
    assert pending_uploads(moto_server, bucket) == []
    assert not await manager.exists(ctx("q"))


async def test_a_cancelled_multipart_upload_is_aborted(
    manager: S3IOManager, moto_server: MotoServer, bucket: str
) -> None:
    with anyio.CancelScope() as scope:

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(20):
                if i == 10:
                    scope.cancel()
                yield b"y" * MiB

        await manager.store(ctx("c"), chunks())
    assert scope.cancelled_caught
    assert pending_uploads(moto_server, bucket) == []
    assert not await manager.exists(ctx("c"))


# -- errors ------------------------------------------------------------------------------


async def test_a_missing_bucket_is_named(moto_server: MotoServer) -> None:
    async with S3IOManager("no-such-bucket", endpoint_url=moto_server.endpoint_url) as io:
        for call in (
            io.store(ctx("p"), 1),
            io.load(ctx("p")),
            io.exists(ctx("p")),
            io.list_partitions("orders"),
        ):
            with pytest.raises(S3StorageError, match="does not exist") as caught:
                await call
            assert caught.value.reason == "missing bucket"
            assert caught.value.bucket == "no-such-bucket"
            assert caught.value.asset == "orders"


async def test_a_missing_bucket_names_the_key_on_store(moto_server: MotoServer) -> None:
    async with S3IOManager("no-such-bucket", endpoint_url=moto_server.endpoint_url) as io:
        with pytest.raises(S3StorageError) as caught:
            await io.store(ctx("p"), 1)
    message = str(caught.value)
    assert message.startswith(
        "asset 'orders' partition 'p': s3://no-such-bucket/orders/partition=p"
    )
    assert caught.value.key == "orders/partition=p"


async def test_refused_credentials_are_named(
    moto_server: MotoServer, bucket: str, moto_auth: None
) -> None:
    options = {"aws_access_key_id": "AKIAWRONG", "aws_secret_access_key": "wrong"}
    async with S3IOManager(
        bucket, endpoint_url=moto_server.endpoint_url, client_options=options
    ) as io:
        with pytest.raises(S3StorageError, match="credentials were refused") as caught:
            await io.store(ctx("p"), 1)
        assert caught.value.reason == "credentials"
        assert (caught.value.asset, caught.value.partition) == ("orders", "p")
        for call in (io.load(ctx("p")), io.exists(ctx("p")), io.list_partitions("orders")):
            with pytest.raises(S3StorageError, match="credentials were refused") as caught:
                await call
            assert caught.value.reason == "credentials"


async def test_an_unstorable_key_fails_before_writing(manager: S3IOManager) -> None:
    with pytest.raises(S3StorageError, match="object key") as caught:
        await manager.store(ctx("\ud800"), 1)
    assert caught.value.reason == "unserialisable"
    with pytest.raises(S3StorageError, match="1024"):
        await manager.store(ctx("k" * 1100), 1)


# -- the runtime and the environment ---------------------------------------------------


async def test_one_client_per_runtime(moto_server: MotoServer, bucket: str) -> None:
    manager = S3IOManager(bucket, "rt", endpoint_url=moto_server.endpoint_url)

    @fs.asset(io_manager="s3", partitions=fs.StaticPartitions(["a/b", "c"]))
    async def numbers(ctx: fs.Context) -> list[int]:
        return [1, 2, 3]

    @fs.asset(io_manager="s3", partitions=fs.StaticPartitions(["a/b", "c"]))
    async def total(numbers: list[int]) -> int:
        return sum(numbers)

    async with fs.Runtime(io_managers={"s3": manager}) as rt:
        assert manager._client.opened == 1  # opened with the runtime
        for key in ("a/b", "c"):
            result = await rt.materialize([numbers, total], partition=key)
            assert result["total"] == 6
        assert await fs.load(total, "a/b", runtime=rt) == 6
        assert manager._client.opened == 1
        assert result.records["total"].metadata["s3"]["serializer"] == "json"
    assert manager._client._client is None  # closed with the runtime
    assert object_keys(moto_server, bucket, "rt/") == [
        "rt/numbers/partition=a%2Fb",
        "rt/numbers/partition=c",
        "rt/total/partition=a%2Fb",
        "rt/total/partition=c",
    ]


async def test_the_endpoint_comes_from_the_environment(
    moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server.endpoint_url)
    async with S3IOManager(bucket) as io:
        assert io.endpoint_url == moto_server.endpoint_url
        await io.store(ctx("env"), 1)
        assert await io.load(ctx("env")) == 1
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    async with S3IOManager(bucket) as io:
        assert await io.load(ctx("env")) == 1


def test_the_registry_name_resolves_to_the_class() -> None:
    from flowstone._core.registry import BUILTIN_IO_MANAGERS, import_string

    assert import_string(BUILTIN_IO_MANAGERS["s3"]) is S3IOManager


def test_importing_without_aioboto3_names_the_extra() -> None:
    assert import_error_without("aioboto3", "flowstone.ext.s3") == (
        "MissingExtraError flowstone.ext.s3 needs aioboto3: pip install 'flowstone[s3]'"
    )


async def test_throttling_is_retried_with_backoff(moto_server: MotoServer, bucket: str) -> None:
    from throttling_proxy import throttling_proxy

    with throttling_proxy(moto_server.endpoint_url, throttle=3) as proxy:
        async with S3IOManager(bucket, "slow", endpoint_url=proxy.endpoint_url) as io:
            await io.store(ctx("p"), {"v": 1})
            assert proxy.throttled == 3
            assert await io.load(ctx("p")) == {"v": 1}
            proxy.remaining = 2
            assert await io.list_partitions("orders") == ["p"]
            assert proxy.throttled == 5


async def test_the_registered_name_works_from_the_environment(
    moto_server: MotoServer, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @fs.asset(io_manager="s3")
    async def named() -> list[int]:
        return [1, 2]

    with pytest.raises(fs.ConfigurationError, match="FLOWSTONE_S3_BUCKET"):
        S3IOManager()
    monkeypatch.setenv("FLOWSTONE_S3_BUCKET", bucket)
    monkeypatch.setenv("FLOWSTONE_S3_PREFIX", "from-env")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint_url)
    async with fs.Runtime() as rt:
        result = await rt.materialize([named])
        manager = rt.io_managers.get("s3")
        assert isinstance(manager, S3IOManager) and manager._client._client is not None
    assert result["named"] == [1, 2]
    assert manager._client._client is None  # the runtime closed what it made
    assert object_keys(moto_server, bucket) == ["from-env/named/value"]


async def test_compression_above_a_threshold_is_recorded_on_the_object(
    moto_server: MotoServer, bucket: str
) -> None:
    big = {"rows": [{"id": i, "name": "same text again"} for i in range(2000)]}
    async with S3IOManager(
        bucket, "z", endpoint_url=moto_server.endpoint_url, compression="zlib",
        compression_threshold=1024,
    ) as io:  # fmt: skip
        meta = await io.store(ctx("big"), big)
        assert meta["s3"]["compression"] == "zlib"
        info = head(moto_server, bucket, io.key_of("orders", "big"))
        assert info["Metadata"]["flowstone-compression"] == "zlib"
        assert info["ContentLength"] == meta["s3"]["bytes"] < len(json.dumps(big)) // 10
        assert await io.load(ctx("big")) == big
        small = await io.store(ctx("small"), [1, 2])  # under the threshold: as it is
        assert "compression" not in small["s3"]
        assert await io.load(ctx("small")) == [1, 2]
        # An asset turns it off for itself.
        plain = await io.store(ctx("plain", compression=None), big)
        assert "compression" not in plain["s3"] and await io.load(ctx("plain")) == big
    with pytest.raises(fs.ConfigurationError, match="compression 'lz4'"):
        S3IOManager(bucket, compression="lz4")
    auto = S3IOManager(bucket, compression="auto")
    try:
        import zstandard  # noqa: F401
    except ImportError:
        assert auto.compression == "zlib"
        with pytest.raises(fs.ConfigurationError, match="zstandard"):
            S3IOManager(bucket, compression="zstd")
    else:
        assert auto.compression == "zstd"


async def test_a_load_whose_download_drops_is_picked_up(
    moto_server: MotoServer, bucket: str
) -> None:
    from throttling_proxy import throttling_proxy

    value = bytes(range(256)) * 4000
    with throttling_proxy(moto_server.endpoint_url, throttle=0, cut=2) as proxy:
        async with S3IOManager(bucket, "drop", endpoint_url=proxy.endpoint_url) as io:
            await io.store(ctx("p"), value)
            assert await io.load(ctx("p")) == value
    assert proxy.cuts == 2
