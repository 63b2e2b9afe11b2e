"""``S3ItemReader`` against moto's HTTP server: keys, JSON Lines and CSV across objects,
gzip, paging and resuming from any cursor, and use with the scatter plugin."""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.s3 import S3ItemReader, S3StorageError
from flowstone.ext.scatter import scatter
from flowstone.protocols import ItemReader
from flowstone.testing import MotoServer
from plugin_imports import read_all

pytestmark = pytest.mark.s3


def put(server: MotoServer, bucket: str, key: str, body: bytes) -> None:
    server.client().put_object(Bucket=bucket, Key=key, Body=body)


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture
def events(moto_server: MotoServer, bucket: str) -> list[dict[str, Any]]:
    """Five JSON Lines objects under ``events/`` (one empty, one without a final newline),
    and objects beside them that the reader must not see."""
    rows = [{"n": i, "text": f"é{i}\n"} for i in range(57)]
    put(moto_server, bucket, "events/a.jsonl", jsonl(rows[:20]))
    put(moto_server, bucket, "events/b.jsonl", b"")
    put(moto_server, bucket, "events/c.jsonl", jsonl(rows[20:21]) + b"\n\n" + jsonl(rows[21:40]))
    put(moto_server, bucket, "events/d/", b"")  # a directory marker
    put(moto_server, bucket, "events/d/e.jsonl", jsonl(rows[40:56]))
    put(moto_server, bucket, "events/f.jsonl", jsonl(rows[56:]).rstrip(b"\n"))
    put(moto_server, bucket, "other/x.jsonl", jsonl([{"n": -1}]))
    return rows


def reader_for(server: MotoServer, bucket: str, **options: Any) -> S3ItemReader:
    options.setdefault("prefix", "events/")
    return S3ItemReader(bucket, endpoint_url=server.endpoint_url, **options)


async def test_jsonl_lines_across_objects_in_key_order(
    moto_server: MotoServer, bucket: str, events: list[dict[str, Any]]
) -> None:
    async with reader_for(moto_server, bucket) as reader:
        assert isinstance(reader, ItemReader)
        reader.list_page_size = 2
        for limit in (1, 7, 20, 1000):
            items, cursors = await read_all(reader, limit)
            assert items == events
        assert await reader.count() is None


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=st.lists(st.integers(1, 25), min_size=1, max_size=8), cut=st.integers(0, 8))
async def test_resuming_from_any_cursor_in_a_new_reader_equals_a_full_read(
    moto_server: MotoServer,
    bucket: str,
    events: list[dict[str, Any]],
    limits: list[int],
    cut: int,
) -> None:
    async with reader_for(moto_server, bucket) as reader:
        items: list[Any] = []
        cursor: str | None = None
        for i in range(cut):
            page = await reader.read_page(cursor, limits[i % len(limits)])
            items.extend(page.items)
            cursor = page.cursor
            if cursor is None:
                break
    if cursor is not None or not items:
        async with reader_for(moto_server, bucket) as resumed:  # a new process, say
            rest, _ = await read_all(resumed, limits[-1], cursor)
        items.extend(rest)
    assert items == events


async def test_cursors_name_the_object_and_byte_offset(
    moto_server: MotoServer, bucket: str, events: list[dict[str, Any]]
) -> None:
    async with reader_for(moto_server, bucket) as reader:
        page = await reader.read_page(None, 3)
        assert page.items == events[:3]
        assert page.cursor is not None
        cursor = json.loads(page.cursor)
        assert cursor == {"key": "events/a.jsonl", "offset": len(jsonl(events[:3])), "line": 3}
        page = await reader.read_page(page.cursor, 17)
        assert page.cursor is not None
        # The page ends with a.jsonl's last line: the next read finds its end.
        end = {"key": "events/a.jsonl", "offset": len(jsonl(events[:20])), "line": 20}
        assert json.loads(page.cursor) == end
        page = await reader.read_page(page.cursor, 2)
        assert page.items == events[20:22]
        assert json.loads(page.cursor or "")["key"] == "events/c.jsonl"


async def test_gzip_objects_resume_by_line(moto_server: MotoServer, bucket: str) -> None:
    rows = [{"i": i, "pad": "x" * (i % 50)} for i in range(300)]
    put(moto_server, bucket, "gz/1.jsonl.gz", gzip.compress(jsonl(rows[:120])))
    # Two gzip members concatenated are one valid gzip file.
    put(
        moto_server,
        bucket,
        "gz/2.jsonl.gz",
        gzip.compress(jsonl(rows[120:200])) + gzip.compress(jsonl(rows[200:])),
    )
    async with reader_for(moto_server, bucket, prefix="gz/", gzip=True) as reader:
        items, cursors = await read_all(reader, 33)
        assert items == rows
        middle = json.loads(cursors[4])
        assert middle["key"] == "gz/2.jsonl.gz" and middle["line"] == 165 - 120
    for cursor in cursors:
        async with reader_for(moto_server, bucket, prefix="gz/", gzip=True) as resumed:
            first = await resumed.read_page(cursor, 10)
        done = sum(1 for _ in range(cursors.index(cursor) + 1)) * 33
        assert first.items == rows[done : done + 10]


async def test_csv_rows_as_dicts_with_quoted_newlines(moto_server: MotoServer, bucket: str) -> None:
    def table(rows: list[list[str]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["id", "note"])
        writer.writerows(rows)
        return out.getvalue().encode()

    first = [[str(i), f'line one\nline "two" {i}'] for i in range(10)]
    second = [[str(i), "plain"] for i in range(10, 25)]
    put(moto_server, bucket, "csv/1.csv", table(first))
    put(moto_server, bucket, "csv/2.csv", table(second))
    expected = [{"id": i, "note": n} for i, n in first + second]
    async with reader_for(moto_server, bucket, prefix="csv/", format="csv") as reader:
        items, cursors = await read_all(reader, 4)
    assert items == expected
    for index, cursor in enumerate(cursors):
        async with reader_for(moto_server, bucket, prefix="csv/", format="csv") as resumed:
            rest, _ = await read_all(resumed, 6, cursor)
        assert rest == expected[4 * (index + 1) :]
    async with reader_for(
        moto_server, bucket, prefix="csv/", format="csv", header=False
    ) as headless:
        rows, _ = await read_all(headless, 100)
    assert rows[0] == ["id", "note"] and len(rows) == 27


async def test_keys_format_lists_objects_and_counts(moto_server: MotoServer, bucket: str) -> None:
    client = moto_server.client()
    for i in range(53):
        client.put_object(Bucket=bucket, Key=f"k/{i:05d}", Body=b"x" * (i % 7))
    async with reader_for(moto_server, bucket, prefix="k/", format="keys") as reader:
        reader.list_page_size = 6  # pages of 20 items take several listing requests
        assert await reader.count() == 53
        items, cursors = await read_all(reader, 20)
    assert [i["key"] for i in items] == [f"k/{i:05d}" for i in range(53)]
    assert items[3]["size"] == 3 and items[3]["etag"] and items[3]["last_modified"]
    assert json.loads(cursors[0]) == {"after": "k/00019"}
    async with reader_for(moto_server, bucket, prefix="k/", format="keys") as resumed:
        rest, _ = await read_all(resumed, 1000, cursors[1])
    assert [i["key"] for i in rest] == [f"k/{i:05d}" for i in range(40, 53)]


async def test_errors_name_the_bucket_and_key(moto_server: MotoServer, bucket: str) -> None:
    put(moto_server, bucket, "bad/1.jsonl", b'{"ok": 1}\n{broken\n')
    async with reader_for(moto_server, bucket, prefix="bad/") as reader:
        with pytest.raises(S3StorageError, match=r"bad/1.jsonl: line 2 is not JSON"):
            await read_all(reader, 10)
        for bad in ("nonsense", '{"key": "bad/1.jsonl"}', "[]"):
            with pytest.raises(S3StorageError, match="not a cursor"):
                await reader.read_page(bad, 10)
    async with S3ItemReader("missing-bucket", endpoint_url=moto_server.endpoint_url) as gone:
        with pytest.raises(S3StorageError, match="does not exist") as caught:
            await gone.read_page(None, 10)
    assert caught.value.reason == "missing bucket"
    with pytest.raises(fs.ConfigurationError, match="format"):
        S3ItemReader(bucket, format="parquet")  # type: ignore[arg-type]


async def test_an_empty_prefix_is_an_empty_source(moto_server: MotoServer, bucket: str) -> None:
    async with reader_for(moto_server, bucket, prefix="nothing/") as reader:
        page = await reader.read_page(None, 10)
    assert page.items == [] and page.cursor is None


async def test_a_scatter_over_jsonl_lines(
    moto_server: MotoServer, bucket: str, events: list[dict[str, Any]]
) -> None:
    reader = reader_for(moto_server, bucket)

    @fs.asset
    @scatter(reader=reader, max_concurrent=5, page_size=8)
    async def parsed(ctx: fs.Context, item: dict[str, Any]) -> int:
        return int(item["n"]) * 2

    async with fs.Runtime(plugins=[reader]) as rt:
        result = await rt.materialize([parsed])
    assert result["parsed"] == [row["n"] * 2 for row in events]


async def test_throttled_reads_are_retried(
    moto_server: MotoServer, bucket: str, events: list[dict[str, Any]]
) -> None:
    from throttling_proxy import throttling_proxy

    with throttling_proxy(moto_server.endpoint_url, throttle=2) as proxy:
        async with S3ItemReader(bucket, "events/", endpoint_url=proxy.endpoint_url) as reader:
            first = await reader.read_page(None, 10)  # the listing is throttled twice
            assert proxy.throttled == 2
            proxy.remaining = 2  # and the next object's GET
            items, _ = await read_all(reader, 10, first.cursor)
    assert [*first.items, *items] == events
    assert proxy.throttled == 4


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
async def test_a_download_that_drops_midway_is_picked_up_where_it_stopped(
    moto_server: MotoServer, bucket: str, compressed: bool
) -> None:
    from throttling_proxy import throttling_proxy

    rows = [{"i": i, "pad": "q" * (i % 40)} for i in range(3000)]
    body = jsonl(rows)
    put(moto_server, bucket, "drop/1.jsonl", gzip.compress(body) if compressed else body)
    with throttling_proxy(moto_server.endpoint_url, throttle=0, cut=2) as proxy:
        async with S3ItemReader(
            bucket, "drop/", gzip=compressed, endpoint_url=proxy.endpoint_url
        ) as reader:
            items, _ = await read_all(reader, 500)
    assert proxy.cuts == 2
    assert items == rows


async def test_a_named_reader_opens_and_closes_with_the_runtime(
    moto_server: MotoServer, bucket: str, events: list[dict[str, Any]]
) -> None:
    reader = reader_for(moto_server, bucket)

    @fs.asset
    @scatter(reader="events", max_concurrent=3, page_size=10)
    async def numbers(item: dict[str, Any]) -> int:
        return int(item["n"])

    async with fs.Runtime(item_readers={"events": reader}) as rt:
        assert reader._client._client is not None  # opened with the runtime
        result = await rt.materialize([numbers])
        assert reader._client.opened == 1
    assert result["numbers"] == [row["n"] for row in events]
    assert reader._client._client is None
