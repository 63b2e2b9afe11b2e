"""Check results in PostgreSQL: durable, queryable, and blocking with records written behind."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore, SchemaVersionError
from flowstone.protocols import CheckRecord, CheckStore

pytestmark = pytest.mark.postgres

days = fs.DailyPartitions(start="2025-01-01")


@fs.asset(partitions=days)
def orders(ctx: fs.Context) -> list[dict[str, Any]]:
    total = -1 if ctx.partition == "2025-01-02" else 5
    return [{"id": 1, "total": total}]


@fs.asset(partitions=days)
def revenue(orders: list[dict[str, Any]]) -> int:
    return sum(o["total"] for o in orders)


@fs.check(asset="orders", severity="error")
def no_negative_totals(orders: list[dict[str, Any]]) -> fs.CheckResult:
    bad = [o for o in orders if o["total"] < 0]
    return fs.CheckResult(passed=not bad, metadata={"bad": len(bad)})


@fs.check(asset="orders")
def complains(orders: list[dict[str, Any]]) -> bool:
    raise ValueError("bad\x00byte")


pipeline = fs.Pipeline([orders, revenue, no_negative_totals, complains], name="shop")


async def test_the_store_keeps_check_results(pg_runtime: fs.Runtime) -> None:
    assert isinstance(pg_runtime.store, CheckStore)
    assert pg_runtime.check_store is pg_runtime.store


async def test_an_error_check_blocks_dependents_with_records_written_behind(
    pg_runtime: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    assert getattr(pg_runtime.store, "writes_behind", False)
    result = await pg_runtime.materialize(pipeline, partition="2025-01-02", raise_on_error=False)
    assert result.skipped == ("revenue",)
    assert result.outcomes["revenue"].reason == "input 'orders' failed check 'no_negative_totals'"
    assert result.status is fs.RunStatus.FAILED
    row = await pg_conn.fetchrow(
        f'SELECT metadata::text AS metadata FROM "{pg_schema}".materializations'
        " WHERE asset = 'orders'"
    )
    assert json.loads(row["metadata"])["checks"]["no_negative_totals"] == {
        "passed": False,
        "severity": "error",
    }
    ok = await pg_runtime.materialize(pipeline, partition="2025-01-01", raise_on_error=False)
    assert ok["revenue"] == 5 and ok.status is fs.RunStatus.SUCCEEDED  # only warn failed


async def test_history_is_durable_and_survives_a_new_store(
    pg_dsn: str, pg_schema: str, pg_runtime: fs.Runtime
) -> None:
    first = await pg_runtime.materialize(pipeline, partition="2025-01-02", raise_on_error=False)
    await pg_runtime.materialize(pipeline, partition="2025-01-01", raise_on_error=False)
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as fresh:
        history = await fresh.check_history("orders")
        assert len(history) == 4
        assert [r.partition for r in history] == ["2025-01-01"] * 2 + ["2025-01-02"] * 2
        day2 = await fresh.check_history("orders", "2025-01-02", check="no_negative_totals")
        assert day2 == [
            CheckRecord(
                run_id=first.run_id,
                asset="orders",
                partition="2025-01-02",
                check="no_negative_totals",
                severity="error",
                passed=False,
                metadata={"bad": 1},
                started_at=day2[0].started_at,
                ended_at=day2[0].ended_at,
                data_version=first.records["orders"].data_version,
            )
        ]
        assert day2[0].duration is not None and day2[0].duration >= 0
        (raised,) = await fresh.check_history("orders", "2025-01-02", check="complains")
        assert raised.error == "ValueError: bad\ufffdbyte" and raised.error_type == "ValueError"
        assert await fresh.check_history("orders", limit=1) == history[:1]
        assert await fresh.check_history("revenue") == []


async def test_run_checks_on_a_stored_value_is_durable(
    pg_dsn: str, pg_schema: str, pg_runtime: fs.Runtime
) -> None:
    done = await pg_runtime.materialize(pipeline, partition="2025-01-01", checks=False)
    assert await pg_runtime.check_history("orders") == []
    pg_runtime.register(pipeline)
    records = await pg_runtime.run_checks("orders", "2025-01-01")
    assert {(r.check, r.passed) for r in records} == {
        ("no_negative_totals", True),
        ("complains", False),
    }
    assert {r.run_id for r in records} == {done.run_id}
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as fresh:
        assert {r.check for r in await fresh.check_history("orders", "2025-01-01")} == {
            "no_negative_totals",
            "complains",
        }


async def test_a_migration_shipped_later_below_the_newest_is_applied(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    """A schema may lack a lower-numbered migration (one that landed after a higher one):
    migrating applies it, and a store that does not migrate refuses the schema."""
    async with PostgresStore(pg_dsn, schema=pg_schema):
        pass
    await pg_conn.execute(f'DROP TABLE "{pg_schema}".gates')
    await pg_conn.execute(f'DELETE FROM "{pg_schema}".schema_migrations WHERE version = 4')
    with pytest.raises(SchemaVersionError):
        await PostgresStore(pg_dsn, schema=pg_schema, migrate=False).open()
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=False)
    try:
        assert await store.migrate() == [4]
        assert await store.migrate() == []
    finally:
        await store.aclose()
    assert await pg_conn.fetchval(f"SELECT to_regclass('\"{pg_schema}\".gates') IS NOT NULL")


async def test_a_warn_check_running_behind_the_run_lands_in_the_stored_record(
    pg_dsn: str, pg_schema: str, pg_runtime: fs.Runtime
) -> None:
    """A ``warn`` check runs while the dependents go on (the record is written behind the
    run); the asset's stored record still ends up with its result."""

    @fs.asset
    def rows() -> list[int]:
        return [1, 2]

    @fs.asset
    def count(rows: list[int]) -> int:
        return len(rows)

    @fs.check(asset="rows")
    def three_rows(rows: list[int]) -> bool:
        return len(rows) == 3

    result = await pg_runtime.materialize([rows, count, three_rows])
    assert result.ok and result["count"] == 2
    async with PostgresStore(pg_dsn, schema=pg_schema) as fresh:
        stored = await fresh.latest("rows", None)
    assert stored is not None
    assert stored.metadata["checks"] == {"three_rows": {"passed": False, "severity": "warn"}}
