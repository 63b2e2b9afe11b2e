"""The ``postgres`` IO manager: JSONB, exact JSON, Arrow IPC, bytes, pickle opt-in, table mode."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresIOManager, PostgresStore, TableSpec
from flowstone.protocols import IOContext
from flowstone.testing import assert_failed
from value_samples import cyclic_dict, cyclic_list, nested

pytestmark = pytest.mark.postgres


def ctx(asset: str = "a", partition: str | None = None, **metadata: Any) -> IOContext:
    return IOContext(asset, partition, None, metadata)


async def stored_count(conn: asyncpg.Connection, schema: str) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".asset_values'))


async def test_json_values_are_jsonb(pg_store: PostgresStore, pg_conn: asyncpg.Connection) -> None:
    io = pg_store.io_manager
    await io.store(ctx(), {"b": [1, 2.5, None, True], "a": "x"})
    assert await io.load(ctx()) == {"a": "x", "b": [1, 2.5, None, True]}
    row = await pg_conn.fetchrow(
        f"SELECT format, value_json->'a' AS a FROM \"{pg_store.schema}\".asset_values WHERE asset = 'a'"
    )
    assert row is not None and row["format"] == "json" and row["a"] == '"x"'  # queryable


async def test_values_jsonb_would_change_are_kept_exactly(pg_store: PostgresStore) -> None:
    io = pg_store.io_manager
    value = {"nul": "a\x00b", "big": 2.237066240337299e16, "neg": -1e300, "k\x00": 1}
    await io.store(ctx(), value)
    loaded = await io.load(ctx())
    assert loaded == value
    assert isinstance(loaded["big"], float)


async def test_tuples_load_back_as_tuples(pg_store: PostgresStore) -> None:
    io = pg_store.io_manager
    value = {"t": (1, (2, [3, (4,)])), "l": [(), [5]], "nul\x00": ("a\x00",), "big": (1e300,)}
    await io.store(ctx(), value)
    loaded = await io.load(ctx())
    assert loaded == value
    assert type(loaded["t"]) is tuple and type(loaded["t"][1][1]) is list
    assert type(loaded["t"][1][1][1]) is tuple and type(loaded["l"][0]) is tuple
    assert type(loaded["nul\x00"]) is tuple and type(loaded["big"]) is tuple
    await io.store(ctx("top"), ((1, 2), [3]))
    assert await io.load(ctx("top")) == ((1, 2), [3])


REFUSED = [
    pytest.param("\ud800", "surrogate code point U\\+D800", id="lone-surrogate"),
    pytest.param(["ok", {"k": "x\udfffy"}], r"value\[1\]\['k'\].*U\+DFFF", id="nested-surrogate"),
    pytest.param({"\udc00": 1}, "key holding the surrogate", id="surrogate-key"),
    pytest.param("\ud83d\ude00", "surrogate code point U\\+D83D", id="split-pair"),
    pytest.param(10**5000, "int of more than", id="huge-int"),
    pytest.param([1, -(10**5000)], r"value\[1\] is an int", id="nested-huge-int"),
    pytest.param(nested(5000), "nests more than 500 levels deep", id="deep-nesting"),
    pytest.param({"x": float("inf")}, "inf", id="infinity"),
    pytest.param(cyclic_list(), r"value\[1\]\['k'\]\[0\] contains itself", id="cyclic-list"),
    pytest.param(cyclic_dict(), r"value\['self'\] contains itself", id="cyclic-dict"),
]


async def test_values_at_the_limits_round_trip(pg_store: PostgresStore) -> None:
    io = pg_store.io_manager
    for value in (nested(500), 10**4000, [-(10**4000)], {"😀 é": "日本語 😀"}):
        await io.store(ctx(), value)
        assert await io.load(ctx()) == value


@pytest.mark.parametrize(("bad", "reason"), REFUSED)
async def test_values_postgres_would_refuse_fail_before_writing(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection, bad: Any, reason: str
) -> None:
    io = pg_store.io_manager
    await io.store(ctx("a", "p1"), [1, 2])
    with pytest.raises(fs.StorageError, match="asset 'a' partition 'p1'") as failed:
        await io.store(ctx("a", "p1"), bad)
    assert re.search(reason, str(failed.value)), str(failed.value)
    assert await stored_count(pg_conn, pg_store.schema) == 1
    assert await io.load(ctx("a", "p1")) == [1, 2]


@pytest.mark.parametrize(("bad", "reason"), REFUSED)
async def test_materialize_of_a_value_postgres_would_refuse_fails_the_asset(
    pg_runtime: fs.Runtime, bad: Any, reason: str
) -> None:
    @fs.asset
    async def refused() -> Any:
        return bad

    result = await pg_runtime.materialize([refused], raise_on_error=False)
    error = assert_failed(result, "refused", fs.StorageError).__cause__
    assert isinstance(error, fs.StorageError)
    assert str(error).startswith("asset 'refused': ") and re.search(reason, str(error))
    assert not await pg_runtime.exists("refused")


async def test_pickle_stores_what_json_cannot_hold(pg_dsn: str, pg_schema: str) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema, allow_pickle=True) as store:
        io = store.io_manager
        await io.store(ctx("c"), cyclic_list())
        loaded = await io.load(ctx("c"))
        assert loaded[1]["k"][0] is loaded
        await io.store(ctx("s"), "\ud800")
        assert await io.load(ctx("s")) == "\ud800"


async def test_bytes_round_trip(pg_store: PostgresStore) -> None:
    io = pg_store.io_manager
    await io.store(ctx(), b"\x00\x01binary")
    assert await io.load(ctx()) == b"\x00\x01binary"
    await io.store(ctx(), bytearray(b"xy"))
    assert await io.load(ctx()) == b"xy"


async def test_arrow_tables_and_batches_round_trip(pg_store: PostgresStore) -> None:
    pa = pytest.importorskip("pyarrow")
    io = pg_store.io_manager
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "name": ["a", None, "c"],
            "when": pa.array(
                [dt.datetime(2025, 1, 2, tzinfo=dt.UTC)] * 3, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    await io.store(ctx("t"), table)
    loaded = await io.load(ctx("t"))
    assert isinstance(loaded, pa.Table) and loaded.equals(table)
    batch = table.to_batches()[0]
    await io.store(ctx("b", "p1"), batch)
    loaded_batch = await io.load(ctx("b", "p1"))
    assert isinstance(loaded_batch, pa.RecordBatch) and loaded_batch.equals(batch)
    empty = pa.RecordBatch.from_pylist([], schema=table.schema)
    await io.store(ctx("e"), empty)
    assert (await io.load(ctx("e"))).equals(empty)


async def test_unstorable_value_fails_naming_the_asset_and_writes_nothing(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    io = pg_store.io_manager
    await io.store(ctx("orders", "p1"), [1, 2])
    before = await stored_count(pg_conn, pg_store.schema)
    for bad in ({1, 2}, {"x": float("nan")}, {1: "int key"}, object()):
        with pytest.raises(fs.StorageError, match="asset 'orders' partition 'p1'"):
            await io.store(ctx("orders", "p1"), bad)
    assert await stored_count(pg_conn, pg_store.schema) == before
    assert await io.load(ctx("orders", "p1")) == [1, 2]


async def test_pickle_only_when_allowed(pg_dsn: str, pg_schema: str) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema, allow_pickle=True) as store:
        await store.io_manager.store(ctx("s"), {3, 1, 2})
        assert await store.io_manager.load(ctx("s")) == {1, 2, 3}
        with pytest.raises(fs.StorageError, match="cannot pickle"):
            await store.io_manager.store(ctx("s"), lambda: None)
        assert await store.io_manager.load(ctx("s")) == {1, 2, 3}
    async with PostgresStore(pg_dsn, schema=pg_schema) as strict:
        with pytest.raises(fs.StorageError, match="allow_pickle=True"):
            await strict.io_manager.load(ctx("s"))


async def test_materialize_of_an_unstorable_value_fails_the_asset(pg_runtime: fs.Runtime) -> None:
    @fs.asset
    async def opaque() -> object:
        return object()

    result = await pg_runtime.materialize([opaque], raise_on_error=False)
    record = result.records["opaque"]
    assert record.status is fs.Status.FAILED
    assert "asset 'opaque'" in (record.error or "")
    assert not await pg_runtime.exists("opaque")


async def test_io_manager_needs_a_store() -> None:
    with pytest.raises(fs.ConfigurationError, match="PostgresStore"):
        PostgresIOManager()
    rt = fs.Runtime()
    with pytest.raises(fs.ConfigurationError, match="PostgresStore"):
        rt.io_managers.get("postgres")


async def test_list_partitions_and_delete(pg_store: PostgresStore) -> None:
    io = pg_store.io_manager
    for partition in ("2025-01-02", None, "2025-01-01"):
        await io.store(ctx(partition=partition), partition)
    assert await io.list_partitions("a") == [None, "2025-01-01", "2025-01-02"]
    await io.delete(ctx(partition="2025-01-01"))
    assert await io.list_partitions("a") == [None, "2025-01-02"]
    assert await io.list_partitions("nothing") == []


# -- table mode ------------------------------------------------------------------------


async def rows_of(conn: asyncpg.Connection, table: str, order: str = "1") -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {order}")]


async def test_table_mode_replaces_a_partition(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    io = pg_store.io_manager
    spec = f"{pg_store.schema}.orders"
    day1 = [{"id": 1, "total": 9.5, "tags": ["a"]}, {"id": 2, "total": 3.0, "tags": None}]
    day2 = [{"id": 3, "total": 1.0, "tags": {"k": 1}}]
    await io.store(ctx("orders", "d1", table=spec), day1)
    await io.store(ctx("orders", "d2", table=spec), day2)
    assert await io.load(ctx("orders", "d1", table=spec)) == day1
    table = f'"{pg_store.schema}".orders'
    assert [r["partition_key"] for r in await rows_of(pg_conn, table, "id")] == ["d1", "d1", "d2"]
    await io.store(ctx("orders", "d1", table=spec), [{"id": 4, "total": 2.0, "tags": []}])
    assert await io.load(ctx("orders", "d1", table=spec)) == [{"id": 4, "total": 2.0, "tags": []}]
    assert await io.load(ctx("orders", "d2", table=spec)) == day2
    rows = await pg_conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
        "WHERE attrelid = $1::regclass AND attnum > 0",
        table,
    )
    types = {r["attname"]: r["type"] for r in rows}
    assert types == {
        "partition_key": "text",
        "id": "bigint",
        "total": "double precision",
        "tags": "jsonb",
    }
    assert await io.list_partitions("orders") == ["d1", "d2"]
    await io.delete(ctx("orders", "d1", table=spec))
    assert [r["id"] for r in await rows_of(pg_conn, table, "id")] == [3]
    assert not await io.exists(ctx("orders", "d1", table=spec))


async def test_table_mode_upserts_by_key(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    io = pg_store.io_manager
    spec = {
        "name": "customers",
        "schema": pg_store.schema,
        "key": ["region", "id"],
        "write": "upsert",
    }
    first = [{"region": "eu", "id": 1, "name": "Ada"}, {"region": "us", "id": 1, "name": "Bo"}]
    await io.store(ctx("customers", table=spec), first)
    await io.store(
        ctx("customers", table=spec),
        [{"region": "eu", "id": 1, "name": "Ada L."}, {"region": "eu", "id": 2, "name": "Cy"}],
    )
    assert await io.load(ctx("customers", table=spec)) == [
        {"region": "eu", "id": 1, "name": "Ada L."},
        {"region": "eu", "id": 2, "name": "Cy"},
        {"region": "us", "id": 1, "name": "Bo"},
    ]
    table = f'"{pg_store.schema}".customers'
    pk = await pg_conn.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
        table,
    )
    assert pk == "PRIMARY KEY (partition_key, region, id)"
    with pytest.raises(fs.StorageError, match="duplicate key"):
        await io.store(ctx("customers", table=spec), [{"region": "eu", "id": 9, "name": "x"}] * 2)
    with pytest.raises(fs.StorageError, match="no value for key"):
        await io.store(ctx("customers", table=spec), [{"region": None, "id": 9, "name": "x"}])
    assert len(await rows_of(pg_conn, table)) == 3


async def test_table_mode_writes_arrow(pg_store: PostgresStore) -> None:
    pa = pytest.importorskip("pyarrow")
    io = pg_store.io_manager
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "price": pa.array([Decimal("1.50"), Decimal("2.25")], pa.decimal128(10, 2)),
            "day": pa.array([dt.date(2025, 1, 1), dt.date(2025, 1, 2)], pa.date32()),
            "items": pa.array([[1, 2], []], pa.list_(pa.int64())),
        }
    )
    spec = TableSpec("prices", schema=pg_store.schema, key=("id",))
    await io.store(ctx("prices", "p", table=spec), table)
    loaded = await io.load(ctx("prices", "p", table=spec))
    assert isinstance(loaded, pa.Table) and loaded.equals(table)


async def test_table_mode_from_the_io_manager_option(pg_store: PostgresStore) -> None:
    io = PostgresIOManager(pg_store, tables={"events": f"{pg_store.schema}.events"})
    await io.store(ctx("events"), [{"n": 1}])
    assert await io.load(ctx("events")) == [{"n": 1}]
    await io.store(ctx("events"), [])
    assert await io.load(ctx("events")) == []
    with pytest.raises(fs.ConfigurationError, match="asset 'x'"):
        PostgresIOManager(pg_store, tables={"x": "bad name"})


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        ("orders; DROP TABLE x", [{"id": 1}], "invalid table name"),
        ({"name": "t", "schema": "1bad"}, [{"id": 1}], "invalid schema name"),
        ({"name": "t", "write": "upsert"}, [{"id": 1}], "needs key"),
        ({"name": "t", "bogus": 1}, [{"id": 1}], "unknown table options"),
        ("t", [{"bad\ncolumn": 1}], "control characters"),
        ("t", [{"partition_key": 1}], "partition column"),
        ("t", [{"id": 1}, {"id": "x"}], "mixes"),
        ("t", {"not": "rows"}, "list of dicts"),
        ("t", [{"o": object()}], "no column type"),
    ],
)
async def test_table_mode_rejects_bad_input_before_writing(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection, table: Any, rows: Any, message: str
) -> None:
    with pytest.raises(fs.StorageError, match="asset 'bad'") as info:
        await pg_store.io_manager.store(ctx("bad", table=table), rows)
    assert message in str(info.value)
    assert await stored_count(pg_conn, pg_store.schema) == 0
    assert await pg_conn.fetchval("SELECT to_regclass('t')") is None


async def test_table_mode_into_an_existing_table(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    table = f'"{pg_store.schema}".existing'
    await pg_conn.execute(
        f"CREATE TABLE {table} (part text NOT NULL, id int, label text, extra text DEFAULT 'd')"
    )
    spec = {"name": "existing", "schema": pg_store.schema, "partition_column": "part"}
    io = pg_store.io_manager
    await io.store(ctx("e", "p", table=spec), [{"id": 1, "label": "one"}])
    assert await rows_of(pg_conn, table) == [{"part": "p", "id": 1, "label": "one", "extra": "d"}]
    with pytest.raises(fs.StorageError, match=r"no column\(s\) \['missing'\]"):
        await io.store(ctx("e", "p", table=spec), [{"id": 2, "missing": 1}])
    with pytest.raises(fs.StorageError, match="asset 'e' partition 'p'"):
        await io.store(ctx("e", "p", table=spec), [{"id": "not a number", "label": "x"}])
    assert await rows_of(pg_conn, table) == [{"part": "p", "id": 1, "label": "one", "extra": "d"}]
    assert await io.load(ctx("e", "p", table=spec)) == [{"id": 1, "label": "one"}]


async def test_table_mode_through_a_pipeline(
    pg_runtime: fs.Runtime, pg_conn: asyncpg.Connection
) -> None:
    schema = pg_runtime.store.schema  # type: ignore[attr-defined]

    @fs.asset(
        metadata={"table": {"name": "daily", "schema": schema, "key": ["id"]}},
        partitions=fs.StaticPartitions(["a", "b"]),
    )
    async def daily(ctx: fs.Context) -> list[dict[str, Any]]:
        return [{"id": i, "part": ctx.partition} for i in range(3)]

    @fs.asset(partitions=fs.StaticPartitions(["a", "b"]))
    async def count(daily: list[dict[str, Any]]) -> int:
        return len(daily)

    for partition in ("a", "b"):
        result = await pg_runtime.materialize([daily, count], partition=partition)
        assert result["count"] == 3
    assert await pg_conn.fetchval(f'SELECT count(*) FROM "{schema}".daily') == 6
    assert await pg_runtime.load("daily", "b") == [{"id": i, "part": "b"} for i in range(3)]
