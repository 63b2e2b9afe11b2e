"""Connection loss: killed backends, a server that goes away and comes back, bounded retries.

Backends are killed with ``pg_terminate_backend`` from another connection, only those of
the test's own store (a unique ``application_name``); a server going away is played by a
TCP proxy in front of the shared server that drops every connection and refuses new ones
until it is brought back. A real restart runs on the suite's own throwaway cluster
(``throwaway_pg``), never on the shared server.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import anyio.to_thread
import asyncpg
import pytest

import flowstone as fs
from conftest_pg import drop_schema
from flowstone.ext.postgres import DatabaseUnavailableError, PostgresStore, RetryPolicy
from flowstone.protocols import IOContext
from throwaway_pg import ThrowawayCluster

pytestmark = pytest.mark.postgres

T0 = datetime(2025, 1, 2, tzinfo=UTC)


async def kill_backends(conn: asyncpg.Connection, application: str) -> int:
    """Terminate every backend of ``application``; return how many."""
    killed = await conn.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        application,
    )
    return len(killed)


@pytest.fixture
async def tagged(pg_dsn: str, pg_schema: str) -> AsyncIterator[tuple[PostgresStore, str]]:
    """A store whose connections carry a unique application name."""
    application = f"fs-test-{uuid.uuid4().hex[:8]}"
    store = PostgresStore(
        pg_dsn,
        schema=pg_schema,
        max_size=3,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.2),
        connect_options={"server_settings": {"application_name": application}},
    )
    async with store:
        yield store, application


async def test_operations_continue_after_backends_are_killed(
    tagged: tuple[PostgresStore, str], pg_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    store, application = tagged
    caplog.set_level(logging.WARNING, "flowstone.postgres")
    for i in range(8):
        assert await kill_backends(pg_conn, application) >= 1
        run = fs.RunRecord(f"r{i}", None, (), None, fs.RunStatus.RUNNING, T0)
        assert (await store.create_run(run))[1]
        await kill_backends(pg_conn, application)
        await store.save_record(
            fs.MaterializationRecord(f"r{i}", "a", None, fs.Status.SUCCEEDED, started_at=T0)
        )
        await kill_backends(pg_conn, application)
        await store.io_manager.store(IOContext("a", str(i)), {"i": i})
        await kill_backends(pg_conn, application)
        assert await store.io_manager.load(IOContext("a", str(i))) == {"i": i}
    assert len(await store.list_runs()) == 8
    latest = await store.latest("a", None)
    assert latest is not None and latest.run_id == "r7"


async def test_a_query_killed_midway_is_retried(
    tagged: tuple[PostgresStore, str], pg_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    store, application = tagged
    caplog.set_level(logging.WARNING, "flowstone.postgres")
    attempts = 0

    async def slow(conn: Any) -> int:
        nonlocal attempts
        attempts += 1
        return int(await conn.fetchval("SELECT 7 FROM pg_sleep($1)", 0.5 if attempts == 1 else 0))

    async def killer() -> None:
        with anyio.fail_after(10):
            while not await pg_conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND query LIKE '%pg_sleep%' AND state = 'active'",
                application,
            ):
                await anyio.sleep(0.01)  # until the slow query is running
        await kill_backends(pg_conn, application)

    async with anyio.create_task_group() as tg:
        tg.start_soon(killer)
        assert await store.call("run a slow query", slow) == 7
    assert attempts == 2
    assert "retrying" in caplog.text


async def test_a_run_survives_killed_connections(
    tagged: tuple[PostgresStore, str], pg_dsn: str
) -> None:
    store, application = tagged
    admin = await asyncpg.connect(pg_dsn)

    async def root() -> int:
        await kill_backends(admin, application)
        return 1

    async def compute(prev: int) -> int:
        await kill_backends(admin, application)
        return prev + 1

    def step(n: int) -> fs.AssetDef[..., int]:
        if n == 0:
            return fs.AssetDef(root, name="v0")
        return fs.AssetDef(compute, name=f"v{n}", deps={"prev": f"v{n - 1}"})

    try:
        async with fs.Runtime(store=store) as rt:
            result = await rt.materialize([step(n) for n in range(10)], run_id="killed")
            assert result.ok and result["v9"] == 10
        records = await store.get_records("killed")
        assert [r.status for r in records] == [fs.Status.SUCCEEDED] * 10
        assert await store.io_manager.load(IOContext("v9")) == 10
    finally:
        await admin.close()


# -- a server that goes away -----------------------------------------------------------


class Proxy:
    """A TCP proxy to the server that can drop all connections and refuse new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.update({writer.transport, up_writer.transport})
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()

    async def aclose(self) -> None:
        await self.down()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(pg_dsn)
    server = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await server.up()
    try:
        yield server
    finally:
        await server.aclose()


def through(dsn: str, proxy: Proxy) -> str:
    parts = urlsplit(dsn)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{proxy.port}"))


async def test_an_outage_shorter_than_the_budget_is_waited_out(
    pg_dsn: str, pg_schema: str, proxy: Proxy
) -> None:
    policy = RetryPolicy(timeout=20, initial_delay=0.02, max_delay=0.1)
    async with PostgresStore(through(pg_dsn, proxy), schema=pg_schema, retry=policy) as store:
        await store.create_run(fs.RunRecord("r", None, (), None, fs.RunStatus.RUNNING, T0))
        await proxy.down()

        async def restart() -> None:
            await anyio.sleep(0.3)  # the outage
            await proxy.up()

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(restart)
            run = await store.get_run("r")
        assert run is not None and run.run_id == "r"
        assert time.monotonic() - started >= 0.25


async def test_an_outage_longer_than_the_budget_is_a_clear_error(
    pg_dsn: str, pg_schema: str, proxy: Proxy
) -> None:
    policy = RetryPolicy(timeout=0.4, initial_delay=0.02, max_delay=0.1)
    async with PostgresStore(through(pg_dsn, proxy), schema=pg_schema, retry=policy) as store:
        await store.save_record(fs.MaterializationRecord("r", "a", None, fs.Status.SUCCEEDED))
        await proxy.down()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="PostgreSQL unavailable") as info:
            await store.latest("a", None)
        assert 0.35 <= time.monotonic() - started < 5
        assert isinstance(info.value, fs.StorageError)
        assert info.value.__cause__ is not None
        assert "current record of asset 'a'" in str(info.value)
        await proxy.up()
        latest = await store.latest("a", None)  # and it recovers
        assert latest is not None and latest.run_id == "r"


async def test_an_unreachable_server_fails_to_open_within_the_budget(pg_schema: str) -> None:
    policy = RetryPolicy(timeout=0.3, initial_delay=0.02, max_delay=0.1)
    store = PostgresStore(
        "postgresql://postgres:postgres@127.0.0.1:1/test", schema=pg_schema, retry=policy
    )
    with pytest.raises(DatabaseUnavailableError, match="connect to PostgreSQL") as info:
        await store.open()
    assert isinstance(info.value.__cause__, OSError)


async def test_a_run_continues_across_a_server_restart(
    pg_dsn: str, pg_schema: str, proxy: Proxy
) -> None:
    """The server disappears in the middle of a run and comes back; the run finishes."""
    policy = RetryPolicy(timeout=20, initial_delay=0.02, max_delay=0.1)
    calls: list[str] = []

    @fs.asset
    async def first() -> int:
        calls.append("first")
        return 1

    background: list[anyio.abc.TaskGroup] = []

    @fs.asset
    async def second(first: int) -> int:
        calls.append("second")
        await proxy.down()
        background[0].start_soon(restart)
        return first + 1

    @fs.asset
    async def third(second: int) -> int:
        calls.append("third")
        return second + 1

    async def restart() -> None:
        await anyio.sleep(0.3)  # the outage
        await proxy.up()

    store = PostgresStore(through(pg_dsn, proxy), schema=pg_schema, retry=policy)
    async with anyio.create_task_group() as restarts:
        background.append(restarts)
        async with fs.Runtime(store=store) as rt:
            result = await rt.materialize([first, second, third], run_id="restart")
    assert result.ok and result["third"] == 3
    assert calls == ["first", "second", "third"]
    async with PostgresStore(pg_dsn, schema=pg_schema) as direct:
        records = await direct.get_records("restart")
        assert {r.asset: r.status for r in records} == dict.fromkeys(
            ["first", "second", "third"], fs.Status.SUCCEEDED
        )
        assert await direct.io_manager.load(IOContext("third")) == 3


async def test_a_run_continues_across_a_real_server_restart(
    throwaway_pg: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The server itself restarts in the middle of a run (its backends are shut down, new
    connections are refused while it starts); the run finishes and every record is stored."""
    policy = RetryPolicy(timeout=60, initial_delay=0.02, max_delay=0.2)
    schema = f"fs_test_{uuid.uuid4().hex[:12]}"
    restarted: list[bool] = []

    @fs.asset
    async def first() -> int:
        return 1

    @fs.asset
    async def second(first: int) -> int:
        await anyio.to_thread.run_sync(throwaway_pg.restart)
        restarted.append(True)
        return first + 1

    @fs.asset
    async def third(second: int) -> int:
        return second + 1

    caplog.set_level(logging.WARNING, "flowstone.postgres")
    try:
        store = PostgresStore(throwaway_pg.dsn, schema=schema, retry=policy)
        async with fs.Runtime(store=store) as rt:
            result = await rt.materialize([first, second, third], run_id="restart")
        assert result.ok and result["third"] == 3 and restarted == [True]
        assert "retrying" in caplog.text, "the store did not see the restart"
        async with PostgresStore(throwaway_pg.dsn, schema=schema) as direct:
            records = await direct.get_records("restart")
            assert {r.asset: r.status for r in records} == dict.fromkeys(
                ["first", "second", "third"], fs.Status.SUCCEEDED
            )
            assert await direct.io_manager.load(IOContext("third")) == 3
    finally:
        if not throwaway_pg.running():
            await anyio.to_thread.run_sync(throwaway_pg.start)
        await drop_schema(throwaway_pg.dsn, schema)
