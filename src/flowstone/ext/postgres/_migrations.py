"""Versioned schema migrations shipped with the package, applied under an advisory lock.

Migrations are the files ``migrations/NNNN_name.sql`` next to this module, numbered from
``0001`` in order, each number once. A number may be missing (one reserved by work that
lands later): a migration that ships later with a lower number than one already applied
is applied then, since a schema records each version it has, not only its newest. Each
runs once per schema, in one transaction with ``search_path``
set to that schema (so the SQL uses unqualified names), and is recorded in the schema's
``schema_migrations`` table. A transaction-scoped advisory lock keyed by the schema name
makes concurrent migrations from several processes safe: one applies, the others wait and
then find nothing left to do. A schema whose newest migration is newer than the newest
file here raises :class:`SchemaVersionError`.

To add a migration, drop the next numbered file into ``migrations/``; never edit one that
has shipped.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from flowstone import ConfigurationError

from ._errors import SchemaVersionError
from ._sql import advisory_key, qualified, quote_ident, validate_identifier

if TYPE_CHECKING:
    from ._sql import Connection

__all__ = [
    "Migration",
    "check_version",
    "current_version",
    "latest_version",
    "load_migrations",
    "migrate_schema",
    "shipped_versions",
]

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_NAMESPACE = "flowstone.migrate"

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One shipped migration.

    :param version: its number (``0001`` → 1)
    :param name: the rest of its file name, without ``.sql``
    :param sql: the SQL text
    :param checksum: a digest of the SQL, recorded when applied
    """

    version: int
    name: str
    sql: str
    checksum: str


@functools.cache
def load_migrations() -> tuple[Migration, ...]:
    """The shipped migrations in order.

    :raises ConfigurationError: the files are misnumbered (a duplicate, or none is 0001)
    """
    folder = resources.files(__package__ or "flowstone.ext.postgres").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is None:
            continue
        sql = entry.read_text(encoding="utf-8")
        found.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=sql,
                checksum=hashlib.sha256(sql.encode()).hexdigest()[:16],
            )
        )
    found.sort(key=lambda m: m.version)
    previous = 0
    for migration in found:
        if migration.version == previous or (previous == 0 and migration.version != 1):
            expected = "0001" if previous == 0 else f"one number after {previous:04d}"
            raise ConfigurationError(
                f"flowstone.ext.postgres migrations are misnumbered: expected {expected}, "
                f"found {migration.version:04d}_{migration.name}.sql"
            )
        previous = migration.version
    return tuple(found)


def shipped_versions() -> list[int]:
    """The numbers of the migrations this code ships, in order."""
    return [m.version for m in load_migrations()]


async def _applied_versions(conn: Connection, schema: str) -> set[int]:
    """The migrations applied to ``schema`` (none when it has no migrations table)."""
    table = qualified(schema, "schema_migrations")
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if not exists:
        return set()
    return {int(r["version"]) for r in await conn.fetch(f"SELECT version FROM {table}")}


def latest_version() -> int:
    """The newest migration this code ships."""
    migrations = load_migrations()
    return migrations[-1].version if migrations else 0


async def current_version(conn: Connection, schema: str) -> int:
    """The newest migration applied to ``schema`` (0 when none, or no such schema)."""
    table = qualified(schema, "schema_migrations")
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {table}")
    return int(version or 0)


async def check_version(conn: Connection, schema: str) -> int:
    """Check that ``schema`` is at exactly the version this code ships.

    :return: the version
    :raises SchemaVersionError: older (not migrated) or newer than this code
    """
    found = await current_version(conn, schema)
    expected = latest_version()
    if found != expected:
        raise SchemaVersionError(schema, found, expected)
    if set(shipped_versions()) - await _applied_versions(conn, schema):
        raise SchemaVersionError(schema, found, expected)  # it lacks one shipped later
    return found


async def migrate_schema(conn: Connection, schema: str) -> list[int]:
    """Create ``schema`` if needed and apply the migrations it lacks.

    Safe to call from many processes at once; idempotent.

    :param conn: a connection not inside a transaction
    :param schema: the target schema (a plain identifier)
    :return: the versions applied by this call (empty when already up to date)
    :raises SchemaVersionError: the schema is newer than this code
    """
    try:
        validate_identifier(schema, "schema name")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    migrations = load_migrations()
    expected = latest_version()
    found = await current_version(conn, schema)
    if found > expected:
        raise SchemaVersionError(schema, found, expected)
    if found == expected and not set(shipped_versions()) - await _applied_versions(conn, schema):
        return []
    table = qualified(schema, "schema_migrations")
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", *advisory_key(_LOCK_NAMESPACE, schema)
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute(_MIGRATIONS_TABLE.format(table=table))
        done = {int(r["version"]) for r in await conn.fetch(f"SELECT version FROM {table}")}
        found = max(done, default=0)
        if found > expected:
            raise SchemaVersionError(schema, found, expected)
        await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {table} (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied.append(migration.version)
    return applied
