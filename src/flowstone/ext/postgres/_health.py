"""``PostgresStore``'s health check: the connection, the schema version, the scatter workers."""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING

from flowstone import ComponentHealth, HealthStatus

from ._migrations import current_version, latest_version
from ._sql import qualified

if TYPE_CHECKING:
    from ._database import PostgresDatabase
    from ._sql import Connection

__all__ = ["postgres_health"]


async def postgres_health(store: PostgresDatabase) -> list[ComponentHealth]:
    """Three components, from one round trip on a pooled connection.

    - ``postgres``: the server answers (its version);
    - ``postgres:schema``: the schema is at the version this code ships (``down`` when it
      is not migrated, or newer than this code);
    - ``postgres:workers``: scatter workers whose heartbeat lease is current, and those
      whose lease ran out (a dead worker's items go back to pending: ``up`` either way).
    """
    schema = store.schema

    async def query(conn: Connection) -> tuple[str, int, int, int]:
        server = str(await conn.fetchval("SHOW server_version"))
        found = await current_version(conn, schema)
        live = expired = 0
        workers = qualified(schema, "scatter_workers")
        if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", workers):
            row = await conn.fetchrow(
                f"SELECT count(*) FILTER (WHERE lease_until > now()) AS live, "
                f"count(*) FILTER (WHERE lease_until <= now()) AS expired FROM {workers}"
            )
            assert row is not None
            live, expired = int(row["live"]), int(row["expired"])
        return server, found, live, expired

    started = perf_counter()
    server, found, live, expired = await store.call("check the database's health", query)
    latency = perf_counter() - started
    expected = latest_version()
    if found == expected:
        version = ComponentHealth(
            "postgres:schema", HealthStatus.UP, latency, f"schema {schema!r} at version {found}"
        )
    else:
        why = (
            "not migrated (run `flowstone db migrate`)"
            if found < expected
            else "newer than this code"
        )
        version = ComponentHealth(
            "postgres:schema",
            HealthStatus.DOWN,
            latency,
            f"schema {schema!r} at version {found}, expected {expected}: {why}",
        )
    return [
        ComponentHealth("postgres", HealthStatus.UP, latency, f"PostgreSQL {server} reachable"),
        version,
        ComponentHealth(
            "postgres:workers",
            HealthStatus.UP,
            latency,
            f"{live} scatter worker(s) with a current lease, {expired} expired",
        ),
    ]
