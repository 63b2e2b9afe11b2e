"""``PostgresStore``: the one object that makes a runtime durable.

It owns an asyncpg pool (or uses one it is given), keeps the schema migrated, implements
:class:`~flowstone.protocols.MaterializationStore` with the memory store's semantics, and,
through :meth:`PostgresStore.install`, registers the ``postgres`` IO manager as the
runtime's default plus the durable coordinators::

    async with fs.Runtime(store=PostgresStore(dsn, schema="flowstone")) as rt:
        await rt.materialize(pipeline, run_id="nightly-2025-01-02")

Every operation retries transient failures (a dropped connection, a restarting server) for
a bounded time (:class:`RetryPolicy`) and maps driver errors to flowstone errors. The store
is layered: the pool, retries and the one way to run a statement are
:class:`~._database.PostgresDatabase`; on it, records and the values written with them are
:class:`~._records.RecordStorage`, the store's base; this module holds the lifecycle
(migrations, the write buffer's background work), the wiring into a runtime and runs.
Check results (``@fs.check``) are :class:`~._checks.CheckStorage`, its other base.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any, Self

from flowstone import (
    ConfigurationError,
    RunRecord,
    RunStatus,
)
from flowstone.protocols import COMPRESSION_THRESHOLD

from ._background import BackgroundWork
from ._buffer import WriteBuffer
from ._checks import CheckStorage
from ._decisions import PostgresParallelCoordinator, PostgresRoutingCoordinator
from ._events import PostgresEvents
from ._gates import PostgresGateStore
from ._health import postgres_health
from ._io import PostgresIOManager
from ._migrations import check_version, migrate_schema
from ._partitions import DynamicPartitionRows
from ._queries import Queries
from ._records import RecordStorage
from ._rows import run_from_row
from ._scatter import PostgresScatterCoordinator
from ._schedules import PostgresScheduleStore
from ._sql import dump_json, to_utc

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from types import TracebackType

    import anyio
    import asyncpg

    from flowstone import ComponentHealth, Runtime

    from ._errors import RetryPolicy
    from ._sql import Connection, Pool


__all__ = ["PostgresStore"]


class PostgresStore(RecordStorage, CheckStorage, DynamicPartitionRows):
    """Durable runs, materialization records, asset values, check results and dynamic
    partition keys in PostgreSQL.

    Pass it as ``fs.Runtime(store=PostgresStore(dsn))``: the runtime becomes durable as a
    whole (records, the default IO manager ``postgres``, the durable coordinators). It is an
    async context manager that opens its pool and migrates on entry and closes on exit; it
    also opens itself on first use. It can be opened again after closing. It belongs to one
    event loop at a time: close it before its loop ends; used from a new loop (a sync entry
    point runs one per call), it reconnects, and connections left in an ended loop are
    dropped unclosed.

    The store keeps one connection of its own (out of ``max_size``) for sequential work,
    which skips the pool's acquire and release; concurrent work uses the pool. Its pool
    skips asyncpg's reset query on release (one round trip per operation): code that leaves
    session state (session advisory locks, ``LISTEN``, ``SET``) on a pooled connection
    cleans it up itself.

    Writes are batched per asset: an asset's ``running`` record and its value wait in memory
    (at most ``flush_interval`` seconds) and are written in one statement with its terminal
    record, so a value and its record commit together. Succeeded records are written behind
    the run (``write_behind``): the asset's dependents start at once, records begun while a
    write is in flight go together in the next statement (a group commit), in order, and an
    asset counts as succeeded (its event, the end of the run) only once its record is
    durable. A crash loses only records not yet committed: those assets run again on resume.

    :param dsn: a ``postgresql://`` connection string (or pass ``pool=``)
    :param schema: the PostgreSQL schema holding flowstone's tables (created if needed)
    :param pool: an existing asyncpg pool to use instead of creating one; it is not closed
    :param min_size: the least connections the store's own pool keeps
    :param max_size: the most connections the store opens (its pool and the one it keeps)
    :param migrate: apply missing migrations when opening; when false, a schema that is not
        at this code's version raises :class:`SchemaVersionError`
    :param retry: how long and how often transient failures are retried
    :param flush_interval: seconds a ``running`` record may wait before it is written on its
        own; ``0`` writes every record and value at once
    :param write_behind: let an asset's dependents start while its succeeded record is
        written (records still land in order, and the asset counts as succeeded once its
        record is durable; see :meth:`begin_save_record`); ``False`` makes each record
        durable before its dependents start
    :param allow_pickle: let the ``postgres`` IO manager pickle values JSON and Arrow cannot
        hold (only for data you trust: loading a pickle runs code)
    :param compression: compress stored values and durable scatter results of at least
        ``compression_threshold`` bytes: ``"zlib"``, ``"zstd"`` (needs ``zstandard``),
        ``"auto"`` / ``True``; default off; an asset overrides it with
        ``metadata={"compression": ...}`` (see :class:`PostgresIOManager`)
    :param compression_threshold: the smallest value, in bytes, that is compressed
    :param events: relay the runs' coarse lifecycle events between the processes sharing the
        schema (see :class:`PostgresEvents`, which a runtime's ``plugins=`` can pass to
        replace this default); ``False`` neither publishes nor listens
    :param connect_options: further keyword arguments for ``asyncpg.create_pool``
    :raises ConfigurationError: neither or both of ``dsn`` and ``pool``, or a bad schema name
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str = "flowstone",
        pool: Pool | None = None,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        retry: RetryPolicy | None = None,
        flush_interval: float = 0.1,
        write_behind: bool = True,
        allow_pickle: bool = False,
        compression: bool | str | None = None,
        compression_threshold: int = COMPRESSION_THRESHOLD,
        events: bool = True,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            dsn,
            schema=schema,
            pool=pool,
            min_size=min_size,
            max_size=max_size,
            retry=retry,
            connect_options=connect_options,
        )
        if flush_interval < 0:
            raise ConfigurationError(f"flush_interval must be >= 0, got {flush_interval!r}")
        self._auto_migrate = migrate
        self.relay_events = events
        self.flush_interval = flush_interval
        self.write_behind = write_behind
        self.queries = Queries(schema)
        self._depth = 0
        self._buffer = WriteBuffer()
        #: Records written behind the run, and delayed flushes (see _records).
        self._background = BackgroundWork("writing records")
        self._flush_timer: anyio.CancelScope | None = None
        self._writing: anyio.Event | None = None
        self._schedules: PostgresScheduleStore | None = None
        self.io_manager: PostgresIOManager = PostgresIOManager(
            self,
            allow_pickle=allow_pickle,
            compression=compression,
            compression_threshold=compression_threshold,
        )

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"PostgresStore(schema={self._schema!r}, {state})"

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            await self.aclose()

    async def open(self) -> None:
        """Open the pool and migrate (or check) the schema; done on first use if not called.

        :raises SchemaVersionError: the schema is newer than this code, or not migrated
            while ``migrate=False``
        :raises DatabaseUnavailableError: the server stayed unreachable past the retry budget
        """
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return
        async with self._lock():
            if self._pool is not None and self._loop is loop:
                return
            await self._open_pool()
            try:
                if self._auto_migrate:
                    await self._run(
                        f"migrate schema {self._schema!r}",
                        lambda conn: migrate_schema(conn, self._schema),
                    )
                else:
                    await self._run(
                        f"check schema {self._schema!r}",
                        lambda conn: check_version(conn, self._schema),
                    )
            except BaseException:
                await self._close_pool()
                raise

    def _forget_loop(self) -> None:
        """Drop the write buffer's work of an event loop that is gone."""
        self._buffer.abandon_in_flight()
        self._background.forget()
        self._flush_timer = None
        self._writing = None

    async def aclose(self) -> None:
        """Write what is pending and close the pool (a pool passed in stays open)."""
        timer, self._flush_timer = self._flush_timer, None
        if timer is not None:
            timer.cancel()
        try:
            if self._loop is None or self._loop is asyncio.get_running_loop():
                await self._background.aclose()
            if self._buffer:
                await self.flush()
        finally:
            self._buffer = WriteBuffer()
            await self._close_pool()

    async def migrate(self) -> list[int]:
        """Apply the migrations the schema lacks (creating it if needed).

        Safe to run from several processes at once.

        :return: the versions applied now (empty when it was up to date)
        :raises SchemaVersionError: the schema is newer than this code
        """
        async with self._lock():
            await self._open_pool()
        return await self._run(
            f"migrate schema {self._schema!r}", lambda conn: migrate_schema(conn, self._schema)
        )

    async def check_health(self) -> list[ComponentHealth]:
        """The connection, the schema version and the scatter workers, for
        ``runtime.health()`` (see :class:`~flowstone.protocols.HealthCheck`)."""
        return await postgres_health(self)

    # -- runtime wiring ----------------------------------------------------------------

    def install(self, runtime: Runtime) -> None:
        """Make ``runtime`` durable: register the ``postgres`` IO manager as its default,
        the durable coordinators, the durable gate store (``gate_store=`` given to the
        runtime still wins) and, with ``events``, the relay of lifecycle events between
        processes. Called by ``fs.Runtime(store=...)``."""
        runtime.io_managers.register("postgres", self.io_manager)
        runtime.default_io_manager = "postgres"
        runtime.gate_store = PostgresGateStore(self)
        self._install_coordinators(runtime)
        if self.relay_events:
            PostgresEvents(self, listen=self.dsn is not None).install(runtime)

    def schedule_store(self) -> PostgresScheduleStore:
        """The schedule store (``flowstone.ext.schedule``) in this store's schema: tick
        claims, history and sensor cursors shared by every process (made once)."""
        if self._schedules is None:
            self._schedules = PostgresScheduleStore(self)
        return self._schedules

    def _install_coordinators(self, runtime: Runtime) -> None:
        """Register the durable coordinators on ``runtime``.

        The durable scatter, routing and parallel coordinators register here, under the
        ``scatter``, ``router`` and ``parallel`` kinds, sharing this store's pool and schema.
        """
        runtime.coordinators.register("scatter", PostgresScatterCoordinator(self))
        runtime.coordinators.register("router", PostgresRoutingCoordinator(self))
        runtime.coordinators.register("parallel", PostgresParallelCoordinator(self))

    # -- runs ----------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Create ``run``, or return the run stored under its id (a resume).

        :return: the stored run and whether this call created it
        """
        token = uuid.uuid4().hex
        sql = self.queries.create_run

        async def insert(conn: Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                sql,
                run.run_id,
                run.pipeline,
                list(run.selection),
                run.partition,
                str(run.status),
                to_utc(run.started_at),
                to_utc(run.ended_at),
                dump_json(dict(run.tags)),
                token,
            )

        row = await self.call(f"create run {run.run_id!r}", insert)
        assert row is not None
        created = bool(row["inserted"]) or row["created_by"] == token
        return run_from_row(row), created

    async def finish_run(self, run_id: str, status: RunStatus, ended_at: datetime) -> None:
        """Mark a run ended with ``status`` (pending writes are written first; when they
        fail, the run is marked failed, not left running, and their error raised)."""
        sql = self.queries.finish_run

        async def finish(status: RunStatus) -> None:
            await self.call(
                f"finish run {run_id!r}",
                lambda conn: conn.execute(sql, run_id, str(status), to_utc(ended_at)),
            )

        if self._buffer:
            try:
                await self.flush()
            except Exception:
                with contextlib.suppress(Exception):  # the flush's error is the one to raise
                    await finish(RunStatus.FAILED if status is RunStatus.SUCCEEDED else status)
                raise
        await finish(status)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        sql = self.queries.get_run
        row = await self.call(f"read run {run_id!r}", lambda conn: conn.fetchrow(sql, run_id))
        return None if row is None else run_from_row(row)

    async def list_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """The newest runs first (by start time)."""
        sql = self.queries.list_runs
        rows = await self.call("list runs", lambda conn: conn.fetch(sql, limit))
        return [run_from_row(row) for row in rows]
