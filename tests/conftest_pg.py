"""PostgreSQL fixtures, loaded for the whole suite by the root ``conftest.py``.

- ``pg_dsn``: the server from ``FLOWSTONE_TEST_PG_DSN`` (default: the local test server);
  skips when none answers, fails instead under ``CI=true``;
- ``pg_schema``: a fresh schema name per test, dropped afterwards;
- ``pg_store``: an open ``PostgresStore`` on that schema;
- ``pg_runtime``: an open ``fs.Runtime(store=pg_store)``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

import flowstone as fs

if TYPE_CHECKING:
    from flowstone.ext.postgres import PostgresStore

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"


def _unreachable(dsn: str) -> str | None:
    """Why ``dsn`` cannot be used, or ``None`` when a server answers."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install 'flowstone[postgres]')"

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"no PostgreSQL at FLOWSTONE_TEST_PG_DSN ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test server's DSN; skips (fails under ``CI=true``) when it does not answer."""
    dsn = os.environ.get("FLOWSTONE_TEST_PG_DSN", DEFAULT_DSN)
    reason = _unreachable(dsn)
    if reason is not None:
        hint = "; start one with `make services` (scripts/setup-postgres.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + hint, pytrace=False)
        pytest.skip(reason + hint)
    return dsn


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop ``schema`` and everything in it (no error when it does not exist)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def pg_schema(pg_dsn: str) -> AsyncIterator[str]:
    """A schema name no other test uses; the schema is dropped after the test."""
    schema = f"fs_test_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        await drop_schema(pg_dsn, schema)


@pytest.fixture
async def pg_store(pg_dsn: str, pg_schema: str) -> AsyncIterator[PostgresStore]:
    """An open ``PostgresStore`` on the test's own schema."""
    from flowstone.ext.postgres import PostgresStore

    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    async with store:
        yield store


@pytest.fixture
async def pg_runtime(pg_store: PostgresStore) -> AsyncIterator[fs.Runtime]:
    """An open runtime made durable by ``pg_store``."""
    async with fs.Runtime(store=pg_store) as runtime:
        yield runtime
