"""Writes the database refuses: the asset whose record or value did not land fails (and
nothing that depends on it is stored), the store stays usable, a statement that times out
ends its asset, and a server that never answered fails fast."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import anyio
import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import DatabaseUnavailableError, PostgresStore
from flowstone.protocols import IOContext

pytestmark = pytest.mark.postgres

#: The value the test schema's values table refuses (a CHECK constraint added by `refuse`).
POISON = "poison"


async def refuse_poison(conn: asyncpg.Connection, schema: str) -> None:
    """Make the database reject the value ``POISON`` at write time."""
    await conn.execute(
        f'ALTER TABLE "{schema}".asset_values ADD CONSTRAINT no_poison '
        f"CHECK (value_json IS NULL OR value_json::text <> '\"{POISON}\"')"
    )


async def stored_records(conn: asyncpg.Connection, schema: str, run_id: str) -> dict[str, str]:
    rows = await conn.fetch(
        f'SELECT asset, status FROM "{schema}".materializations WHERE run_id = $1', run_id
    )
    return {r["asset"]: r["status"] for r in rows}


async def run_status(conn: asyncpg.Connection, schema: str, run_id: str) -> str:
    status: str = await conn.fetchval(
        f'SELECT status FROM "{schema}".runs WHERE run_id = $1', run_id
    )
    return status


def assert_failed_storing(result: fs.MaterializeResult, asset: str) -> None:
    outcome = result.outcomes[asset]
    assert outcome.status is fs.Status.FAILED, outcome
    assert isinstance(outcome.error, fs.AssetExecutionError) and outcome.error.asset == asset
    cause = outcome.error.__cause__
    assert isinstance(cause, fs.StorageError) and repr(asset) in str(cause)


async def until_a_write_waits_for_lock(conn: asyncpg.Connection, key: int) -> None:
    """Until a backend waits for advisory lock ``key`` (a write held back by a trigger)."""
    query = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND NOT granted"
    )
    with anyio.fail_after(10):
        while not await conn.fetchval(query, key):
            await anyio.sleep(0.01)


async def test_a_value_written_after_its_running_record_fails_the_asset_and_the_run(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    """The ``running`` record is written in the background while the asset finishes; its
    value is then refused: the asset (and what read it) fail, the run is not succeeded."""
    store = PostgresStore(pg_dsn, schema=pg_schema)
    watcher = await asyncpg.connect(pg_dsn)
    try:
        async with fs.Runtime(store=store) as runtime:
            await runtime.migrate()
            await refuse_poison(pg_conn, pg_schema)
            # Running records wait for an advisory lock the test holds.
            await pg_conn.execute(f"""
                CREATE FUNCTION "{pg_schema}".hold() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.status = 'running' THEN PERFORM pg_advisory_xact_lock(4711); END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER hold BEFORE INSERT OR UPDATE ON "{pg_schema}".materializations
                FOR EACH ROW EXECUTE FUNCTION "{pg_schema}".hold();
            """)
            await pg_conn.execute("SELECT pg_advisory_lock(4711)")

            @fs.asset
            async def source() -> str:
                await until_a_write_waits_for_lock(watcher, 4711)  # its running record
                return POISON

            @fs.asset
            async def reader(source: str) -> int:
                await pg_conn.execute("SELECT pg_advisory_unlock(4711)")
                return len(source)

            with anyio.fail_after(30):
                result = await runtime.materialize(
                    [source, reader], run_id="r", raise_on_error=False
                )
            assert result.status is fs.RunStatus.FAILED
            assert_failed_storing(result, "source")
            assert result.outcomes["reader"].status is not fs.Status.SUCCEEDED
            assert await run_status(pg_conn, pg_schema, "r") == "failed"
            assert "succeeded" not in (await stored_records(pg_conn, pg_schema, "r")).values()
    finally:
        await watcher.close()
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as fresh:
        assert not await fresh.exists(source)
        assert await fresh.store.latest("source", None) is None


@pytest.mark.parametrize("write_behind", [False, True])
async def test_a_refused_value_fails_its_asset_and_leaves_the_store_usable(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection, write_behind: bool
) -> None:
    @fs.asset
    def bad() -> str:
        return POISON

    @fs.asset
    def good() -> str:
        return "fine"

    store = PostgresStore(pg_dsn, schema=pg_schema, write_behind=write_behind)
    async with fs.Runtime(store=store) as runtime:
        await runtime.migrate()
        await refuse_poison(pg_conn, pg_schema)
        result = await runtime.materialize([bad], run_id="bad", raise_on_error=False)
        assert result.status is fs.RunStatus.FAILED
        assert_failed_storing(result, "bad")
        assert await stored_records(pg_conn, pg_schema, "bad") == {"bad": "failed"}
        assert await run_status(pg_conn, pg_schema, "bad") == "failed"
        for run_id in ("later-1", "later-2"):  # unrelated runs go on
            later = await runtime.materialize([good], run_id=run_id)
            assert later.ok and later["good"] == "fine"
        with pytest.raises(fs.AssetExecutionError, match="'bad'"):
            await runtime.materialize([bad], run_id="again")
    # closing raised nothing
    assert await stored_records(pg_conn, pg_schema, "later-2") == {"good": "succeeded"}


async def test_a_record_never_lands_without_the_value_an_earlier_write_failed_to_store(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    """A flush took the value along; the asset's succeeded record, saved meanwhile, must
    fail with it (not land on its own), and the refused value is not sent again."""
    running = fs.MaterializationRecord("r", "x", None, fs.Status.RUNNING)
    async with PostgresStore(pg_dsn, schema=pg_schema) as store:
        await refuse_poison(pg_conn, pg_schema)
        await store.save_record(running)  # waits in memory, with the value stored next
        await store.io_manager.store(IOContext("x", None, "r"), POISON)
        flushing = asyncio.ensure_future(store.flush())
        await asyncio.sleep(0)  # its write is in flight
        with pytest.raises(fs.StorageError, match="'x'"):
            await store.save_record(running.replace(status=fs.Status.SUCCEEDED))
        with pytest.raises(fs.StorageError):
            await flushing
        await store.save_record(fs.MaterializationRecord("r", "y", None, fs.Status.SUCCEEDED))
    # (the running record of x stays for its asset to end: the materializer saves it failed)
    assert await stored_records(pg_conn, pg_schema, "r") == {"x": "running", "y": "succeeded"}
    assert await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".asset_values') == 0


async def test_a_dependent_of_a_refused_value_is_never_stored(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    """Write-behind lets ``b`` start before ``a``'s write fails; ``b``'s record must not
    land, whichever comes first (many trials, to catch the race)."""

    @fs.asset
    def a() -> str:
        return POISON

    @fs.asset
    def b(a: str) -> int:
        return len(a)

    @fs.asset
    def c(b: int) -> int:
        return b + 1

    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as runtime:
        await runtime.migrate()
        await refuse_poison(pg_conn, pg_schema)
        for trial in range(30):
            run_id = f"trial-{trial}"
            result = await runtime.materialize(
                [a, b, c], run_id=run_id, force=True, raise_on_error=False
            )
            assert result.status is fs.RunStatus.FAILED
            assert_failed_storing(result, "a")
            assert result.outcomes["b"].status is not fs.Status.SUCCEEDED, trial
            assert result.outcomes["c"].status is not fs.Status.SUCCEEDED, trial
            records = await stored_records(pg_conn, pg_schema, run_id)
            assert "succeeded" not in records.values(), (trial, records)
            assert await run_status(pg_conn, pg_schema, run_id) == "failed"
            assert await runtime.store.latest("b", None) is None, trial
    count = await pg_conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".latest')
    assert count == 0


async def test_a_statement_timeout_ends_the_asset_and_the_run(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    @fs.asset
    def slow() -> str:
        return "slow"

    async with PostgresStore(pg_dsn, schema=pg_schema):
        pass  # the schema exists
    await pg_conn.execute(f"""
        CREATE FUNCTION "{pg_schema}".slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.value_json::text = '"slow"' THEN PERFORM pg_sleep(5); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON "{pg_schema}".asset_values
        FOR EACH ROW EXECUTE FUNCTION "{pg_schema}".slow();
    """)
    store = PostgresStore(
        pg_dsn,
        schema=pg_schema,
        write_behind=False,
        connect_options={"server_settings": {"statement_timeout": "300ms"}},
    )
    with anyio.fail_after(20):
        async with fs.Runtime(store=store) as runtime:
            result = await runtime.materialize([slow], run_id="t", raise_on_error=False)
            assert result.status is fs.RunStatus.FAILED
            assert_failed_storing(result, "slow")
            assert "statement timeout" in str(result.outcomes["slow"].error)
            assert await run_status(pg_conn, pg_schema, "t") == "failed"
            assert await stored_records(pg_conn, pg_schema, "t") == {"slow": "failed"}


def closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


async def test_a_server_never_reached_fails_fast(
    pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    dsn = f"postgresql://postgres:postgres@127.0.0.1:{closed_loopback_port()}/test"
    store = PostgresStore(dsn, schema=pg_schema)  # the default retry policy
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="flowstone.postgres"):
        with pytest.raises(DatabaseUnavailableError, match="connect to PostgreSQL"):
            async with fs.Runtime(store=store) as runtime:
                await runtime.migrate()
    assert time.monotonic() - started < 5
    assert len(caplog.records) <= 1
