"""Compression in PostgreSQL: stored values and durable scatter results above a threshold,
the codec recorded with each, chosen per store or per asset."""

from __future__ import annotations

import zlib
from typing import Any

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresBarrierStore, PostgresIOManager, PostgresStore
from flowstone.ext.scatter import BarrierScatterCoordinator, scatter
from flowstone.protocols import IOContext

pytestmark = pytest.mark.postgres

BIG = {"rows": [{"id": i, "text": "the same words again " * 4} for i in range(2000)]}


def ctx(asset: str = "a", **metadata: Any) -> IOContext:
    return IOContext(asset, None, None, metadata)


async def stored_row(conn: asyncpg.Connection, schema: str, asset: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        f'SELECT format, value_json, value_bytes FROM "{schema}".asset_values WHERE asset = $1',
        asset,
    )
    assert row is not None
    return row


async def test_values_above_the_threshold_are_compressed_and_say_so(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    io = PostgresIOManager(pg_store, compression="zlib", compression_threshold=1024)
    await io.store(ctx("big"), BIG)
    await io.store(ctx("small"), {"a": 1})
    await io.store(ctx("blob"), b"x" * 5000)
    big = await stored_row(pg_conn, pg_store.schema, "big")
    assert big["format"] == "json_text+zlib" and big["value_json"] is None
    assert len(big["value_bytes"]) < len(str(BIG)) / 10
    assert zlib.decompress(big["value_bytes"]).startswith(b'{"rows":')  # plain zlib
    assert (await stored_row(pg_conn, pg_store.schema, "small"))["format"] == "json"
    assert (await stored_row(pg_conn, pg_store.schema, "blob"))["format"] == "bytes+zlib"
    assert await io.load(ctx("big")) == BIG
    assert await io.load(ctx("small")) == {"a": 1}
    assert await io.load(ctx("blob")) == b"x" * 5000


async def test_an_asset_chooses_its_own_compression(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    @fs.asset(metadata={"compression": "zlib"})
    def squeezed() -> dict[str, Any]:
        return BIG

    @fs.asset(metadata={"compression": None})
    def plain() -> dict[str, Any]:
        return BIG

    @fs.asset
    def default() -> dict[str, Any]:
        return BIG

    store = PostgresStore(pg_dsn, schema=pg_schema, compression="auto", max_size=4)
    async with fs.Runtime(store=store) as rt:
        result = await rt.materialize([squeezed, plain, default])
        assert result.ok
        assert await rt.load("plain") == BIG
    formats = {
        asset: (await stored_row(pg_conn, pg_schema, asset))["format"]
        for asset in ("squeezed", "plain", "default")
    }
    assert formats == {"squeezed": "json_text+zlib", "plain": "json", "default": "json_text+zlib"}


async def test_an_unknown_codec_is_a_configuration_error_naming_it(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    with pytest.raises(fs.ConfigurationError, match="PostgresIOManager: compression 'lz4'"):
        PostgresIOManager(pg_store, compression="lz4")
    with pytest.raises(fs.ConfigurationError, match="compression_threshold"):
        PostgresIOManager(pg_store, compression="zlib", compression_threshold=-1)
    with pytest.raises(fs.ConfigurationError, match="asset 'a'.*'brotli'"):
        await pg_store.io_manager.store(ctx("a", compression="brotli"), BIG)
    assert await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_store.schema}".asset_values') == 0


async def test_corrupt_compressed_bytes_are_a_storage_error(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection
) -> None:
    io = PostgresIOManager(pg_store, compression="zlib", compression_threshold=0)
    await io.store(ctx("big"), BIG)
    await pg_conn.execute(
        f"UPDATE \"{pg_store.schema}\".asset_values SET value_bytes = 'not zlib'::bytea"
    )
    with pytest.raises(fs.StorageError, match="asset 'big': cannot decompress"):
        await io.load(ctx("big"))


LONG = "a long result that compresses well " * 100


@fs.asset(metadata={"compression": "zlib"})
@scatter(items=lambda deps: list(range(30)), key=str, max_concurrent=4)
async def long_results(item: int) -> dict[str, Any]:
    return {"item": item, "text": LONG}


async def test_durable_scatter_results_are_compressed_as_their_asset_says(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, compression_threshold=512, max_size=4)
    async with fs.Runtime(store=store) as rt:
        result = await rt.materialize([long_results])
    assert result["long_results"] == [{"item": i, "text": LONG} for i in range(30)]
    rows = await pg_conn.fetch(f'SELECT result, result_raw FROM "{pg_schema}".scatter_items')
    assert len(rows) == 30
    assert all(r["result"] is None and r["result_raw"][:1] == b"Z" for r in rows)
    assert all(len(r["result_raw"]) < len(LONG) / 5 for r in rows)


async def test_barrier_store_results_are_compressed_as_their_asset_says(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, compression_threshold=512, max_size=4)
    barriers = PostgresBarrierStore(store)
    coordinator = BarrierScatterCoordinator(barriers)
    try:
        async with fs.Runtime(store=store, coordinators={"scatter": coordinator}) as rt:
            first = await rt.materialize([long_results], run_id="z")
            again = await rt.materialize([long_results], run_id="z", force=True)
    finally:
        await barriers.aclose()
    expected = [{"item": i, "text": LONG} for i in range(30)]
    assert first["long_results"] == expected and again["long_results"] == expected
    rows = await pg_conn.fetch(f'SELECT result, result_raw FROM "{pg_schema}".scatter_items')
    assert len(rows) == 30
    assert all(r["result"] is None and r["result_raw"][:1] == b"Z" for r in rows)
    assert all(len(r["result_raw"]) < len(LONG) / 5 for r in rows)
