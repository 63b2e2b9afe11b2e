"""Helpers for the PostgreSQL plugin's tests (the shared fixtures live in ``conftest_pg``)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg")

import flowstone  # noqa: E402 - after the skip


@pytest.fixture
async def pg_conn(pg_dsn: str) -> AsyncIterator[Any]:
    """A plain connection for looking at (and tampering with) the database directly."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def side(pg_dsn: str, pg_schema: str) -> str:
    """The test's schema with the side table ``executions(key, pid)``, where the children of
    the multi-process tests record each item they run (a module may define its own)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        await conn.execute(
            f'CREATE TABLE "{pg_schema}".executions (key text NOT NULL, pid integer NOT NULL)'
        )
    finally:
        await conn.close()
    return pg_schema


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """Environment for child Python processes that import this checkout's flowstone."""
    src = str(Path(flowstone.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter running the tests."""
    return sys.executable
