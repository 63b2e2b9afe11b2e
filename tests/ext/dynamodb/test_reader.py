"""``DynamoDBItemReader`` against moto's HTTP server: query and scan, filters that empty a
page, parallel segments, resuming from cursors, plain values, errors, and scatter."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.dynamodb import DynamoDBError, DynamoDBItemReader
from flowstone.ext.scatter import scatter
from flowstone.protocols import ItemReader
from flowstone.testing import MotoServer
from plugin_imports import import_error_without, read_all

pytestmark = pytest.mark.s3


def reader(server: MotoServer, table: str, **options: Any) -> DynamoDBItemReader:
    return DynamoDBItemReader(table, endpoint_url=server.endpoint_url, **options)


async def test_a_query_pages_in_key_order_with_plain_values(
    moto_server: MotoServer, events_table: str
) -> None:
    async with reader(
        moto_server,
        events_table,
        key_condition="pk = :p AND n >= :from",
        values={":p": "a", ":from": 5},
    ) as query:
        assert isinstance(query, ItemReader)
        items, cursors = await read_all(query, 7)
    assert [i["n"] for i in items] == list(range(5, 40))
    first = items[0]
    assert first == {
        "pk": "a",
        "n": 5,
        "kind": "y",
        "price": 5.25,
        "tags": {"t1", "t5"},
        "blob": bytes([5]),
        "nested": {"ok": True, "list": [1, None]},
    }
    assert type(first["n"]) is int and type(first["price"]) is float
    assert len(cursors) >= 4  # 35 items in pages of 7
    for index, cursor in enumerate(cursors):
        async with reader(
            moto_server,
            events_table,
            key_condition="pk = :p AND n >= :from",
            values={":p": "a", ":from": 5},
        ) as resumed:
            rest, _ = await read_all(resumed, 10, cursor)
        assert rest == items[7 * (index + 1) :]


async def test_a_filtered_page_that_comes_back_empty_is_not_the_end(
    moto_server: MotoServer, events_table: str
) -> None:
    options: dict[str, Any] = {
        "key_condition": "pk = :p",
        "filter": "kind = :k",
        "values": {":p": "a", ":k": "x"},
    }
    async with reader(moto_server, events_table, **options) as query:
        page = await query.read_page(None, 3)
        # DynamoDB read 3 items per request and filtered them all out twice, then found n=9.
        assert [i["n"] for i in page.items] == [9]
        assert query.requests == 4
        assert page.cursor is not None
        rest, _ = await read_all(query, 3, page.cursor)
    assert [i["n"] for i in rest] == [19, 29, 39]


async def test_an_index_and_a_projection(moto_server: MotoServer, events_table: str) -> None:
    async with reader(
        moto_server,
        events_table,
        key_condition="kind = :k",
        values={":k": "x"},
        index="by_kind",
        projection="pk, n",
    ) as query:
        items, _ = await read_all(query, 2)
    assert sorted((i["pk"], i["n"]) for i in items) == [
        ("a", 9),
        ("a", 19),
        ("a", 29),
        ("a", 39),
        ("b", 9),
        ("b", 19),
    ]
    assert all(set(i) == {"pk", "n"} for i in items)


@pytest.mark.parametrize("segments", [1, 3])
async def test_a_scan_in_segments_resumes_each_from_its_own_key(
    moto_server: MotoServer, events_table: str, segments: int
) -> None:
    async with reader(moto_server, events_table, segments=segments) as scan:
        items: list[Any] = []
        cursors: list[str] = []
        read_before: list[int] = []
        cursor = None
        while True:
            page = await scan.read_page(cursor, 6)
            items.extend(page.items)
            if page.cursor is None:
                break
            cursor = page.cursor
            cursors.append(cursor)
            read_before.append(len(items))
    keys = [(i["pk"], i["n"]) for i in items]
    assert sorted(keys) == sorted([("a", n) for n in range(40)] + [("b", n) for n in range(25)])
    assert len(set(keys)) == 65
    if segments > 1:
        state = json.loads(cursors[0])["segments"]
        assert len(state) == segments
    for index in (0, len(cursors) // 2, len(cursors) - 1):
        async with reader(moto_server, events_table, segments=segments) as resumed:
            rest, _ = await read_all(resumed, 6, cursors[index])
        # The items after that page, each once, in the same order as the full read.
        assert [(i["pk"], i["n"]) for i in rest] == keys[read_before[index] :]


async def test_a_scan_with_a_filter_on_the_whole_table(
    moto_server: MotoServer, events_table: str
) -> None:
    async with reader(
        moto_server,
        events_table,
        filter="#k = :k AND price > :p",
        names={"#k": "kind"},
        values={":k": "x", ":p": Decimal("20")},
        segments=2,
        consistent=True,
    ) as scan:
        items, _ = await read_all(scan, 4)
    assert sorted((i["pk"], i["n"]) for i in items) == [("a", 29), ("a", 39)]


async def test_errors_name_the_table(moto_server: MotoServer, events_table: str) -> None:
    async with reader(moto_server, "no-such-table") as scan:
        with pytest.raises(
            DynamoDBError, match="'no-such-table': the table does not exist"
        ) as caught:
            await scan.read_page(None, 5)
    assert caught.value.reason == "missing table"
    async with reader(moto_server, events_table) as scan:
        with pytest.raises(DynamoDBError, match="not a cursor"):
            await scan.read_page('{"segments": [1, 2]}', 5)
    with pytest.raises(fs.ConfigurationError, match="segments are for scans"):
        DynamoDBItemReader("t", key_condition="pk = :p", segments=2)
    with pytest.raises(fs.ConfigurationError, match="values"):
        DynamoDBItemReader("t", values={":x": object()})


async def test_a_scatter_over_a_query(moto_server: MotoServer, events_table: str) -> None:
    source = reader(moto_server, events_table, key_condition="pk = :p", values={":p": "b"})

    @fs.asset
    @scatter(reader=source, max_concurrent=4, page_size=4)
    async def doubled(item: dict[str, Any]) -> int:
        return int(item["n"]) * 2

    async with fs.Runtime(plugins=[source]) as rt:
        result = await rt.materialize([doubled])
    assert result["doubled"] == [n * 2 for n in range(25)]


def test_importing_without_aioboto3_names_the_extra() -> None:
    assert import_error_without("aioboto3", "flowstone.ext.dynamodb") == (
        "MissingExtraError flowstone.ext.dynamodb needs aioboto3: pip install 'flowstone[dynamodb]'"
    )


async def test_throttled_reads_are_retried(moto_server: MotoServer, events_table: str) -> None:
    from throttling_proxy import throttling_proxy

    with throttling_proxy(moto_server.endpoint_url, throttle=3, service="dynamodb") as proxy:
        async with DynamoDBItemReader(
            events_table,
            key_condition="pk = :p",
            values={":p": "b"},
            endpoint_url=proxy.endpoint_url,
        ) as query:
            items, _ = await read_all(query, 10)
    assert [i["n"] for i in items] == list(range(25))
    assert proxy.throttled == 3
