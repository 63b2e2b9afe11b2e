"""``PostgresStore``'s health check: connection, schema version, scatter workers."""

from __future__ import annotations

from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.protocols import HealthCheck

pytestmark = pytest.mark.postgres


async def test_a_migrated_store_reports_its_server_schema_and_workers(
    pg_runtime: fs.Runtime, pg_store: PostgresStore, pg_conn: Any
) -> None:
    assert isinstance(pg_store, HealthCheck)
    workers = f'"{pg_store.schema}".scatter_workers'
    await pg_conn.execute(
        f"INSERT INTO {workers} (host, pid, lease_until) VALUES "
        "('a', 1, now() + interval '1 minute'), ('b', 2, now() - interval '1 minute')"
    )
    report = await pg_runtime.health()
    names = [c.name for c in report.components]
    assert names[:3] == ["postgres", "postgres:schema", "postgres:workers"]
    assert "io_manager:postgres" in names and "gate_store" in names
    assert "store" not in names  # the store's own check replaces the generic one
    assert report.ok, report.to_dict()
    assert report["postgres"].detail.startswith("PostgreSQL 15")
    assert report["postgres:schema"].detail.startswith(f"schema {pg_store.schema!r} at version")
    assert report["postgres:workers"].detail == (
        "1 scatter worker(s) with a current lease, 1 expired"
    )


async def test_a_schema_behind_the_code_is_down(
    pg_runtime: fs.Runtime, pg_store: PostgresStore, pg_conn: Any
) -> None:
    table = f'"{pg_store.schema}".schema_migrations'
    await pg_conn.execute(f"DELETE FROM {table} WHERE version = (SELECT max(version) FROM {table})")
    report = await pg_runtime.health()
    schema = report["postgres:schema"]
    assert schema.status is fs.HealthStatus.DOWN
    assert "not migrated (run `flowstone db migrate`)" in schema.detail
    assert report["postgres"].status is fs.HealthStatus.UP
    assert not report.ok


async def test_an_unreachable_server_is_down(pg_schema: str) -> None:
    store = PostgresStore("postgresql://postgres:postgres@127.0.0.1:1/none", schema=pg_schema)
    report = await fs.Runtime(store=store).health(timeout=2)
    assert not report.ok
    assert report.components[0].status is fs.HealthStatus.DOWN
