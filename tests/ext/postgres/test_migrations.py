"""Schema migrations: idempotent, concurrent from several processes, version checks, CLI."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import textwrap

import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore, SchemaVersionError, latest_version
from flowstone.ext.postgres._cli import register_cli
from flowstone.ext.postgres._migrations import shipped_versions

pytestmark = pytest.mark.postgres

#: The tables of migration 0001 (later migrations add more).
TABLES = {"asset_values", "latest", "materializations", "runs", "schema_migrations"}


async def tables_in(conn: asyncpg.Connection, schema: str) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
    return {r["tablename"] for r in rows}


async def test_migrate_creates_schema_once(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=False)
    try:
        assert await store.migrate() == shipped_versions()
        assert await store.migrate() == []
    finally:
        await store.aclose()
    assert TABLES <= await tables_in(pg_conn, pg_schema)
    versions = await pg_conn.fetch(f'SELECT version FROM "{pg_schema}".schema_migrations')
    assert [r["version"] for r in versions] == shipped_versions()


async def test_store_migrates_on_first_use(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    try:
        assert await store.get_run("none") is None  # opens lazily, migrates
    finally:
        await store.aclose()
    assert TABLES <= await tables_in(pg_conn, pg_schema)


async def test_unmigrated_schema_without_migrate_is_a_clear_error(
    pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=False)
    with pytest.raises(SchemaVersionError, match="flowstone db migrate") as info:
        await store.open()
    assert info.value.found == 0
    assert isinstance(info.value, fs.ConfigurationError)


async def test_newer_schema_is_refused(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    async with PostgresStore(pg_dsn, schema=pg_schema):
        pass
    newer = latest_version() + 1
    await pg_conn.execute(
        f"INSERT INTO \"{pg_schema}\".schema_migrations (version, name, checksum) VALUES ($1, 'future', 'x')",
        newer,
    )
    for migrate in (True, False):
        store = PostgresStore(pg_dsn, schema=pg_schema, migrate=migrate)
        with pytest.raises(SchemaVersionError, match="newer than") as info:
            await store.open()
        assert (info.value.found, info.value.expected) == (newer, latest_version())
        try:
            with pytest.raises(SchemaVersionError):
                await store.migrate()
        finally:
            await store.aclose()


async def test_concurrent_migrations_in_one_process(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    stores = [PostgresStore(pg_dsn, schema=pg_schema, migrate=False, max_size=1) for _ in range(6)]
    try:
        applied = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.aclose()
    assert sorted(map(len, applied)) == [0] * 5 + [len(shipped_versions())]
    assert TABLES <= await tables_in(pg_conn, pg_schema)


async def test_concurrent_migrations_from_several_processes(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection, python: str, child_env: dict[str, str]
) -> None:
    """Four processes migrate the same fresh schema at the same moment: all succeed, once."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from flowstone.ext.postgres import PostgresStore

        async def main(dsn, schema):
            store = PostgresStore(dsn, schema=schema, migrate=False, max_size=1)
            await store._open_pool()          # connect first, so the start is simultaneous
            sys.stdout.write("ready\\n"); sys.stdout.flush()
            sys.stdin.readline()              # the parent releases every child at once
            applied = await store.migrate()
            await store.aclose()
            sys.stdout.write(f"applied {applied}\\n")

        asyncio.run(main(sys.argv[1], sys.argv[2]))
        """
    )
    children = [
        subprocess.Popen(
            [python, "-c", script, pg_dsn, pg_schema],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert await asyncio.to_thread(child.stdout.readline) == "ready\n"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [await asyncio.to_thread(child.communicate, timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [c.returncode for c in children] == [0, 0, 0, 0], [err for _, err in outputs]
    applied = sorted(out.strip() for out, _ in outputs)
    expected = f"applied {shipped_versions()}"
    assert applied == sorted(["applied []"] * 3 + [expected])
    assert TABLES <= await tables_in(pg_conn, pg_schema)
    count = await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".schema_migrations')
    assert count == len(shipped_versions())


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="flowstone")
    register_cli(root.add_subparsers(dest="command", required=True))
    return root


async def test_cli_db_migrate_and_status(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    status = parser().parse_args(["db", "status", "--dsn", pg_dsn, "--schema", pg_schema])
    assert await status.func(status) == 1
    assert "needs migrate" in capsys.readouterr().out
    args = parser().parse_args(["db", "migrate", "--dsn", pg_dsn, "--schema", pg_schema])
    assert await args.func(args) == 0
    assert "applied 0001" in capsys.readouterr().out
    assert await args.func(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert await status.func(status) == 0
    assert TABLES <= await tables_in(pg_conn, pg_schema)


async def test_cli_needs_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWSTONE_DSN", raising=False)
    args = parser().parse_args(["db", "migrate"])
    with pytest.raises(fs.ConfigurationError, match="--dsn"):
        await args.func(args)
    bad = parser().parse_args(["db", "migrate", "--dsn", "postgresql://x/y", "--schema", "no-dash"])
    with pytest.raises(fs.ConfigurationError, match="schema name"):
        await bad.func(bad)
