"""``PostgresItemReader``: keyset pages over a table or a query, resumable cursors, counts."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.postgres import PostgresItemReader, PostgresStore
from flowstone.protocols import ItemReader

pytestmark = pytest.mark.postgres


@pytest.fixture
async def items_table(pg_store: PostgresStore, pg_conn: asyncpg.Connection) -> str:
    table = f"{pg_store.schema}.items"
    await pg_conn.execute(
        f"CREATE TABLE {table} (grp text, id int, name text, at timestamptz, PRIMARY KEY (grp, id))"
    )
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    await pg_conn.executemany(
        f"INSERT INTO {table} VALUES ($1, $2, $3, $4)",
        [(g, i, f"{g}{i}", base + dt.timedelta(minutes=i)) for g in ("a", "b") for i in range(25)],
    )
    return table


async def read_all(
    reader: ItemReader[dict[str, Any]], limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = await reader.read_page(cursor, limit)
        pages += 1
        items.extend(page.items)
        if page.cursor is None:
            return items, pages
        cursor = page.cursor


async def test_pages_through_a_table_in_key_order(
    pg_store: PostgresStore, items_table: str
) -> None:
    reader = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"])
    assert isinstance(reader, ItemReader)
    items, pages = await read_all(reader, 7)
    assert [(r["grp"], r["id"]) for r in items] == [(g, i) for g in ("a", "b") for i in range(25)]
    assert pages == 8  # 50 items in pages of 7
    assert await reader.count() == 50


async def test_cursor_resumes_after_the_last_page(
    pg_store: PostgresStore, items_table: str
) -> None:
    reader = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"], columns=["name"])
    first = await reader.read_page(None, 10)
    second = await reader.read_page(first.cursor, 10)
    assert second.cursor is not None
    assert json.loads(second.cursor) == ["a", 19]
    # A new reader (a resumed process) continues from the checkpointed cursor.
    resumed = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"], columns=["name"])
    rest, _ = await read_all(resumed, 10, second.cursor)
    assert [r["name"] for r in [*first.items, *second.items, *rest]] == [
        f"{g}{i}" for g in ("a", "b") for i in range(25)
    ]
    assert set(rest[0]) == {"name", "grp", "id"}


async def test_query_with_arguments_and_a_timestamp_key(
    pg_store: PostgresStore, items_table: str
) -> None:
    reader = PostgresItemReader(
        pg_store,
        query=f"SELECT at, name FROM {items_table} WHERE grp = $1 AND id >= $2",
        args=["b", 5],
        key="at",
    )
    assert await reader.count() == 20
    page = await reader.read_page(None, 3)
    assert page.cursor is not None and "$datetime" in page.cursor
    items, _ = await read_all(reader, 3, page.cursor)
    assert [r["name"] for r in items] == [f"b{i}" for i in range(8, 25)]


async def test_works_on_a_plain_pool(
    pg_dsn: str, pg_store: PostgresStore, items_table: str
) -> None:
    async with asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) as pool:
        reader = PostgresItemReader(pool, table=items_table, key=["grp", "id"])
        items, _ = await read_all(reader, 50)
    assert len(items) == 50


async def test_empty_source_and_exact_page_boundary(
    pg_store: PostgresStore, items_table: str
) -> None:
    empty = PostgresItemReader(pg_store, query=f"SELECT * FROM {items_table} WHERE false", key="id")
    page = await empty.read_page(None, 5)
    assert (list(page.items), page.cursor) == ([], None)
    reader = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"])
    items, pages = await read_all(reader, 25)
    assert len(items) == 50 and pages == 3  # the last page is empty and ends it


@settings(max_examples=15)
@given(limit=st.integers(1, 60), start=st.integers(0, 50))
async def test_any_page_size_reads_everything_once(
    pg_store: PostgresStore, items_table: str, limit: int, start: int
) -> None:
    reader = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"])
    everything, _ = await read_all(reader, 60)
    cursor = None
    if start:
        cursor = reader._encode(await _row(pg_store, items_table, start))  # resume anywhere
    items, _ = await read_all(reader, limit, cursor)
    assert items == everything[start:]


async def _row(store: PostgresStore, table: str, position: int) -> asyncpg.Record:
    row = await store.pool.fetchrow(
        f"SELECT * FROM {table} ORDER BY grp, id OFFSET $1", position - 1
    )
    assert row is not None
    return row


async def test_bad_options_and_cursors(pg_store: PostgresStore, items_table: str) -> None:
    with pytest.raises(fs.ConfigurationError, match="exactly one"):
        PostgresItemReader(pg_store, key="id")
    with pytest.raises(fs.ConfigurationError, match="invalid table name"):
        PostgresItemReader(pg_store, table="items; drop", key="id")
    reader = PostgresItemReader(pg_store, table=items_table, key=["grp", "id"])
    with pytest.raises(fs.StorageError, match="invalid cursor"):
        await reader.read_page('["a"]', 5)
    with pytest.raises(fs.StorageError, match="invalid cursor"):
        await reader.read_page("not json", 5)
    missing = PostgresItemReader(pg_store, table=f"{pg_store.schema}.nope", key="id")
    with pytest.raises(fs.StorageError, match="UndefinedTable"):
        await missing.read_page(None, 5)
