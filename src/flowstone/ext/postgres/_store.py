"""``PostgresStore``: the one object that makes a runtime durable.

It owns an asyncpg pool (or uses one it is given), keeps the schema migrated, implements
:class:`~flowstone.protocols.MaterializationStore` with the memory store's semantics, and,
through :meth:`PostgresStore.install`, registers the ``postgres`` IO manager as the
runtime's default plus the durable coordinators::

    async with fs.Runtime(store=PostgresStore(dsn, schema="flowstone")) as rt:
        await rt.materialize(pipeline, run_id="nightly-2025-01-02")

Every operation retries transient failures (a dropped connection, a restarting server) for
a bounded time (:class:`RetryPolicy`) and maps driver errors to flowstone errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import asyncpg

from flowstone import (
    ConfigurationError,
    MaterializationRecord,
    RunRecord,
    RunStatus,
    RuntimeStateError,
    Status,
    StorageError,
)

from ._buffer import Batch, PendingValue, RecordKey, WriteBuffer
from ._errors import RetryPolicy, describe, is_transient, map_errors, retrying
from ._migrations import check_version, migrate_schema
from ._queries import Queries
from ._rows import (
    record_from_row,
    record_row,
    run_from_row,
    started_key,
    value_row,
    where_names,
    where_record,
    write_arguments,
)
from ._sql import (
    dump_json,
    partition_id,
    qualified,
    to_utc,
    validate_identifier,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from datetime import datetime
    from types import TracebackType
    from typing import TypeAlias

    from flowstone import Runtime

    from ._io import PostgresIOManager
    from ._sql import Connection, Pool

    #: What an operation does, for messages: the text, or a function making it when needed.
    What: TypeAlias = str | Callable[[], str]

__all__ = ["PostgresStore"]

T = TypeVar("T")

#: ``create_pool`` options that ``connect`` does not take.
_POOL_ONLY = frozenset(
    {
        "min_size",
        "max_size",
        "max_queries",
        "max_inactive_connection_lifetime",
        "setup",
        "init",
        "reset",
        "connect",
        "loop",
    }
)

_log = logging.getLogger("flowstone.postgres")


async def _keep_session(connection: Any) -> None:
    """Pool reset hook: skip asyncpg's per-release reset query (one round trip per operation).

    asyncpg still rolls back a transaction left open. The store leaves no session state
    behind; code that sets some (session advisory locks, LISTEN, SET) on a pooled
    connection cleans it up itself.
    """


class PostgresStore:
    """Durable runs, materialization records and asset values in PostgreSQL.

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
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ConfigurationError("PostgresStore needs either a dsn or a pool=, not both")
        try:
            validate_identifier(schema, "schema name")
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigurationError(f"invalid pool size: min_size={min_size}, max_size={max_size}")
        if flush_interval < 0:
            raise ConfigurationError(f"flush_interval must be >= 0, got {flush_interval!r}")
        from ._io import PostgresIOManager

        self.dsn = dsn
        self._schema = schema
        self._given_pool = pool
        self._min_size = min_size
        self._max_size = max_size
        self._auto_migrate = migrate
        self.retry_policy = retry or RetryPolicy()
        self.flush_interval = flush_interval
        self.write_behind = write_behind
        self._connect_options = dict(connect_options or {})
        self.queries = Queries(schema)
        self._pool: Pool | None = None
        #: A connection of the store's own for sequential work, used while it is free.
        self._primary: asyncpg.Connection[asyncpg.Record] | None = None
        self._primary_busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: tuple[asyncio.AbstractEventLoop, anyio.Lock] | None = None
        self._depth = 0
        self._buffer = WriteBuffer()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_tasks: set[asyncio.Task[None]] = set()
        #: Writes records begun behind their run (see begin_save_record).
        self._writer: asyncio.Task[None] | None = None
        #: Whether the server answered once (only then are failures to connect retried).
        self._reached = False
        self.io_manager: PostgresIOManager = PostgresIOManager(self, allow_pickle=allow_pickle)

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"PostgresStore(schema={self._schema!r}, {state})"

    # -- identity ----------------------------------------------------------------------

    @property
    def schema(self) -> str:
        """The PostgreSQL schema holding flowstone's tables."""
        return self._schema

    def table(self, name: str) -> str:
        """The quoted, schema-qualified name of one of flowstone's tables: ``"s"."runs"``."""
        return qualified(self._schema, name)

    @property
    def pool(self) -> Pool:
        """The open asyncpg pool.

        :raises RuntimeStateError: the store is not open (``await store.open()`` first)
        """
        if self._pool is None:
            raise RuntimeStateError(
                "PostgresStore is not open: use `async with store:` or `await store.open()`"
            )
        return self._pool

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

    def _lock(self) -> anyio.Lock:
        """The lock that serialises opening, one per event loop."""
        loop = asyncio.get_running_loop()
        if self._open_lock is None or self._open_lock[0] is not loop:
            self._open_lock = (loop, anyio.Lock())
        return self._open_lock[1]

    async def _open_pool(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pool is not None:
            if self._loop is loop:
                return
            # Opened in another event loop (a sync entry point runs one per call): start
            # over. Connections of a loop that is closed can only be dropped.
            pool, self._pool = self._pool, None
            if self._given_pool is None:
                with contextlib.suppress(RuntimeError):
                    pool.terminate()
            self._drop_primary()
            self._buffer.abandon_in_flight()
            self._flush_handle = None
            self._writer = None
        if self._given_pool is not None:
            self._pool = self._given_pool
        else:
            dsn = self.dsn
            # With room for it, one connection is kept outside the pool for sequential work.
            pool_max = self._max_size - 1 if self._max_size >= 2 else self._max_size

            async def connect() -> Pool:
                pool = asyncpg.create_pool(
                    dsn,
                    min_size=min(self._min_size, pool_max),
                    max_size=pool_max,
                    reset=_keep_session,
                    **self._connect_options,
                )
                try:
                    return await pool
                except BaseException:
                    pool.terminate()
                    raise

            with map_errors("connect to PostgreSQL"):
                self._pool = await retrying(
                    connect,
                    what="connect to PostgreSQL",
                    policy=self.retry_policy,
                    first_contact=not self._reached,
                )
            self._reached = True
        self._loop = loop

    async def _connect_primary(self) -> asyncpg.Connection[asyncpg.Record]:
        return await self.connect_dedicated()

    async def connect_dedicated(self) -> asyncpg.Connection[asyncpg.Record]:
        """A new connection outside the pool, with the store's connect options and ``init``.

        For work that holds session state (advisory locks, ``LISTEN``); the caller closes it.
        Needs a DSN (a store made from a user's pool has none).
        """
        if self.dsn is None:
            raise ConfigurationError("a dedicated connection needs the store's dsn")
        options = {k: v for k, v in self._connect_options.items() if k not in _POOL_ONLY}
        conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(self.dsn, **options)
        init = self._connect_options.get("init")
        if init is not None:
            await init(conn)
        return conn

    def _drop_primary(self) -> None:
        primary, self._primary = self._primary, None
        if primary is not None and not primary.is_closed():
            with contextlib.suppress(RuntimeError):  # its event loop may be closed
                primary.terminate()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        here = self._loop is asyncio.get_running_loop()
        if not here:  # opened in an event loop that is gone: its connections can only be dropped
            self._drop_primary()
            if pool is not None and self._given_pool is None:
                with contextlib.suppress(RuntimeError):
                    pool.terminate()
            return
        primary, self._primary = self._primary, None
        if primary is not None and not primary.is_closed():
            try:
                await primary.close(timeout=5)
            except Exception:
                primary.terminate()
        if pool is not None and self._given_pool is None:
            await pool.close()

    async def aclose(self) -> None:
        """Write what is pending and close the pool (a pool passed in stays open)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        try:
            if self._loop is None or self._loop is asyncio.get_running_loop():
                for task in list(self._flush_tasks):
                    await task
                await self._wait_for_writer()
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

    # -- runtime wiring ----------------------------------------------------------------

    def install(self, runtime: Runtime) -> None:
        """Make ``runtime`` durable: register the ``postgres`` IO manager as its default and
        the durable coordinators. Called by ``fs.Runtime(store=...)``."""
        runtime.io_managers.register("postgres", self.io_manager)
        runtime.default_io_manager = "postgres"
        self._install_coordinators(runtime)

    def _install_coordinators(self, runtime: Runtime) -> None:
        """Register the durable coordinators on ``runtime``.

        The durable scatter, routing and parallel coordinators register here, under the
        ``scatter``, ``router`` and ``parallel`` kinds, sharing this store's pool and schema.
        """
        from ._decisions import PostgresParallelCoordinator, PostgresRoutingCoordinator
        from ._scatter import PostgresScatterCoordinator

        runtime.coordinators.register("scatter", PostgresScatterCoordinator(self))
        runtime.coordinators.register("router", PostgresRoutingCoordinator(self))
        runtime.coordinators.register("parallel", PostgresParallelCoordinator(self))

    # -- running statements ------------------------------------------------------------

    async def call(
        self,
        what: What,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        """Run ``operation`` with a pooled connection, retrying transient failures.

        This is how the plugin's parts talk to the database; it opens the store on first use.

        :param what: what it does, completing "could not ...", for errors and logs (or a
            function returning that text, called only when it is needed)
        :param operation: receives a connection; with ``idempotent`` it may run more than once
        :param idempotent: retry after transient failures (only when running it twice is safe)
        :raises DatabaseUnavailableError: transient failures outlasted the retry policy
        :raises StorageError: any other database error
        """
        if self._pool is None or self._loop is not asyncio.get_running_loop():
            await self.open()
        return await self._run(what, operation, idempotent=idempotent)

    async def _run(
        self,
        what: What,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        pool = self.pool
        primary = self._primary
        if primary is not None and not self._primary_busy and _is_open(primary):
            # The common case, first and without wrappers: the kept connection is free.
            self._primary_busy = True
            try:
                return await operation(primary)
            except Exception as exc:
                what = _text(what)
                if not is_transient(exc) or not idempotent:
                    if is_transient(exc):
                        self._drop_primary()
                    with map_errors(what):
                        raise
                self._drop_primary()  # and retry below, on a new connection
                _log.warning("could not %s (%s); retrying", what, describe(exc))
            except BaseException:
                self._drop_primary()  # cancelled mid-statement: the connection is unusable
                raise
            finally:
                self._primary_busy = False

        async def attempt() -> T:
            if self._primary_busy or not self._use_primary:
                return await self._on_pool(pool, operation)
            # Sequential work (one asset after another) runs on a connection of its own,
            # which skips the pool's acquire and release: they cost about as much as a
            # short statement.
            self._primary_busy = True
            try:
                primary = self._primary
                if primary is None or not _is_open(primary):
                    self._primary = primary = await self._connect_primary()
                return await operation(primary)
            except BaseException as exc:
                if not isinstance(exc, Exception) or is_transient(exc):
                    self._drop_primary()  # cancelled mid-statement, or broken: start over
                raise
            finally:
                self._primary_busy = False

        what = _text(what)
        with map_errors(what):
            if idempotent:
                return await retrying(attempt, what=what, policy=self.retry_policy)
            return await attempt()

    @property
    def _use_primary(self) -> bool:
        return self._given_pool is None and self._max_size >= 2 and self._pool is not None

    @staticmethod
    async def _on_pool(pool: Pool, operation: Callable[[Connection], Awaitable[T]]) -> T:
        async with pool.acquire() as conn:
            try:
                return await operation(conn)
            except Exception as exc:
                if is_transient(exc) and not conn.is_closed():
                    conn.terminate()  # the pool opens a fresh one for the retry
                raise

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

    # -- records ---------------------------------------------------------------------

    async def save_record(self, record: MaterializationRecord) -> None:
        """Insert or replace the record of (run_id, asset, partition).

        A non-terminal record (``running``) waits in memory for the terminal one (or for
        ``flush_interval``); a terminal record is written at once, with whatever waits.
        """
        key = _record_key(record)
        buffer = self._buffer
        if not record.status.terminal and self.flush_interval > 0:
            buffer.records[key] = record
            buffer.open_keys.add(key)
            if self._flush_handle is None:
                self._schedule_flush()
            return
        buffer.open_keys.discard(key)
        refused = buffer.refused(key, record)
        if refused is not None:
            raise refused
        # A record whose ``running`` record still waits here was not written by this
        # process: it is most likely new, which a plain insert writes for less.
        fresh = key in buffer.records
        await self._write(
            buffer.take(record=(key, record)),
            lambda: f"save the record of {where_record(record)}",
            fresh=fresh,
        )

    @property
    def writes_behind(self) -> bool:
        """Whether succeeded records are written behind the run (``write_behind`` and
        batched writes)."""
        return self.write_behind and self.flush_interval > 0

    def begin_save_record(self, record: MaterializationRecord) -> Awaitable[None]:
        """Start writing a terminal record behind the run; the awaitable ends when it is
        durable (see :class:`~flowstone.protocols.PipelinedRecordStore`).

        The materializer lets the asset's dependents start meanwhile. Records begun while
        a write is in flight go together in the next statement, in the order begun; when a
        write fails, the records begun after it fail too and are not stored, and so does a
        record naming as an input version one whose record could not be stored. With
        ``flush_interval=0`` the record is written at once, as by :meth:`save_record`.

        :raises StorageError: (from the awaitable) the record could not be written
        """
        if not record.status.terminal or not self.writes_behind:
            return self.save_record(record)
        key = _record_key(record)
        buffer = self._buffer
        refused = buffer.refused(key, record)
        if refused is not None:
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(refused)
            return failed
        future = buffer.begin(key, record)
        writer = self._writer
        if writer is None or writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_begun())
        return future

    async def _write_begun(self) -> None:
        """Write begun records, the waiting ones together, until none waits."""
        buffer = self._buffer
        while buffer.begun_waiting():
            batch = buffer.take()
            fresh = len(batch.records) == 1 and not buffer.fresh.isdisjoint(batch.records)
            try:
                await self._write(batch, "save succeeded records", fresh=fresh)
            except Exception as exc:
                # Their savers get the error (the buffer failed them with it).
                _log.debug("could not save succeeded records: %s", describe(exc))
                return

    async def _wait_for_writer(self) -> None:
        """Until records begun in this event loop are written (or failed)."""
        writer = self._writer
        if writer is not None and not writer.done() and self._loop is asyncio.get_running_loop():
            await asyncio.wait([writer])

    async def get_records(self, run_id: str) -> list[MaterializationRecord]:
        """All records of a run, in the order they were first saved."""
        sql = self.queries.get_records
        rows = await self.call(
            f"read the records of run {run_id!r}", lambda conn: conn.fetch(sql, run_id)
        )
        records = {
            (r.run_id, r.asset, partition_id(r.partition)): r for r in map(record_from_row, rows)
        }
        records.update(
            (key, record)
            for key, record in self._buffer.uncommitted_records().items()
            if key[0] == run_id
        )
        return list(records.values())

    async def latest(self, asset: str, partition: str | None) -> MaterializationRecord | None:
        """The newest succeeded, not invalidated record of (asset, partition); a succeeded
        record this process is still writing counts (read your own writes)."""
        sql = self.queries.latest
        pid = partition_id(partition)
        row = await self.call(
            f"read the current record of {where_names(asset, partition)}",
            lambda conn: conn.fetchrow(sql, asset, pid),
        )
        writing = self._buffer.newest_succeeded(asset, pid)
        if writing is not None:
            return writing
        return None if row is None else record_from_row(row)

    async def history(
        self, asset: str, partition: str | None = None, *, limit: int = 100
    ) -> list[MaterializationRecord]:
        """Records of an asset (one partition, or all when ``partition`` is ``None``), newest
        first by start time."""
        what = f"read the history of {where_names(asset, partition)}"
        if partition is None:
            sql = self.queries.history_all
            rows = await self.call(what, lambda conn: conn.fetch(sql, asset, limit))
        else:
            sql = self.queries.history_partition
            pid = partition_id(partition)
            rows = await self.call(what, lambda conn: conn.fetch(sql, asset, pid, limit))
        records = {
            (r.run_id, r.asset, partition_id(r.partition)): r for r in map(record_from_row, rows)
        }
        wanted = None if partition is None else partition_id(partition)
        records.update(
            (key, record)
            for key, record in self._buffer.uncommitted_records().items()
            if key[1] == asset and (wanted is None or key[2] == wanted)
        )
        ordered = sorted(records.values(), key=started_key, reverse=True)
        return ordered[:limit]

    async def invalidate(self, asset: str, partition: str | None) -> None:
        """Make :meth:`latest` forget the current record of (asset, partition)."""
        sql = self.queries.invalidate
        pid = partition_id(partition)
        await self.call(
            f"invalidate {where_names(asset, partition)}",
            lambda conn: conn.execute(sql, asset, pid),
        )

    # -- deferred writes ---------------------------------------------------------------

    async def flush(self) -> None:
        """Write every pending record and value now (and wait for records being written
        behind their run)."""
        await self._wait_for_writer()
        if self._buffer:
            await self._write(self._buffer.take(), "write pending records")

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        self._flush_handle = loop.call_later(self.flush_interval, self._flush_soon, loop)

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flush_handle = None
        if not self._buffer or loop.is_closed():
            return
        task = loop.create_task(self._flush_in_background())
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            # They stay pending: the next write, flush or close carries them.
            _log.warning("could not write pending records (%s); they are kept", describe(exc))

    # -- values that commit with their records ----------------------------------------
    # The IO manager and table mode write values through these, never through the buffer.

    async def write_value(self, value: PendingValue, what: What) -> None:
        """Store an encoded value: kept to commit in one statement with its asset's
        terminal record when that record is still to be written in this process, else
        written now, with whatever else is pending.

        :param what: completes "could not ..." in errors
        :raises StorageError: the value could not be written
        """
        buffer = self._buffer
        if (
            self.flush_interval > 0
            and value.run_id is not None
            and (value.run_id, value.asset, value.partition_id) in buffer.open_keys
        ):
            buffer.values[value.asset, value.partition_id] = value
            if self._flush_handle is None:
                self._schedule_flush()
            return
        await self._write(buffer.take(value=value), what)

    def pending_value(self, asset: str, partition: str | None) -> PendingValue | None:
        """The newest value of (asset, partition) this process has not committed yet
        (read your own writes), or ``None``; a pending delete also gives ``None``."""
        return self._buffer.find_value((asset, partition_id(partition)))

    def pending_partitions(self, asset: str) -> dict[str, str | None]:
        """Partition ids (with their keys) of ``asset``'s values not committed yet."""
        return self._buffer.value_keys(asset)

    @contextlib.asynccontextmanager
    async def value_write_in_order(self, asset: str, partition: str | None) -> AsyncIterator[None]:
        """Order a write of (asset, partition) that is not a plain value (a delete, rows in
        a table) with the others: it starts once earlier in-flight writes of that value
        are done, and later ones wait for it; a pending value of it is dropped."""
        buffer = self._buffer
        batch = buffer.track([(asset, partition_id(partition))])
        ok = False
        try:
            await buffer.wait_turn(batch)
            yield
            ok = True
        finally:
            buffer.finish(batch, ok=ok)

    def _write_statement(self, batch: Batch, *, fresh: bool) -> tuple[str, str | None, list[Any]]:
        """The statement writing ``batch``, the one to run instead if it finds its record
        written already (``fresh``: a plain insert was tried first), and its arguments."""
        queries = self.queries
        if len(batch.records) == 1 and len(batch.values) <= 1:
            ((key, record),) = batch.records.items()
            args = record_row(key, record, to_latest=record.status is Status.SUCCEEDED)
            if not batch.values:
                if fresh:
                    return queries.write_one_new, queries.write_one, args
                return queries.write_one, None, args
            (value,) = batch.values.values()
            args += value_row(value)
            if fresh:
                return queries.write_one_value_new, queries.write_one_value, args
            return queries.write_one_value, None, args
        return queries.write, None, write_arguments(batch)

    async def _write(self, batch: Batch, what: What, *, fresh: bool = False) -> None:
        buffer = self._buffer
        error: BaseException | None = None
        try:
            if buffer.writing and buffer.writing[0] is not batch:
                await buffer.wait_turn(batch)
            if batch.abort is not None:
                raise batch.abort  # begun records before these failed: these must not land
            if not batch.empty():
                sql, upsert, args = self._write_statement(batch, fresh=fresh)
                if upsert is None:
                    await self.call(what, lambda conn: conn.execute(sql, *args))
                else:
                    key = self.queries.record_key

                    async def write(conn: Connection) -> None:
                        try:
                            await conn.execute(sql, *args)
                        except asyncpg.UniqueViolationError as exc:
                            # Written before after all (a resumed run, a retried statement).
                            if exc.constraint_name != key:
                                raise
                            await conn.execute(upsert, *args)

                    await self.call(what, write)
        except BaseException as exc:
            error = exc
            raise
        finally:
            buffer.finish(batch, ok=error is None, error=error)


def _record_key(record: MaterializationRecord) -> RecordKey:
    """The buffer's key of ``record``.

    :raises StorageError: a name holds a NUL character, which PostgreSQL text cannot hold
    """
    run_id, asset, partition = record.run_id, record.asset, record.partition
    if "\x00" in run_id or "\x00" in asset or (partition and "\x00" in partition):
        raise StorageError(
            f"cannot save the record of {where_record(record)}: PostgreSQL text cannot hold NUL"
        )
    return (run_id, asset, "" if partition is None else "=" + partition)


def _text(what: What) -> str:
    """The text of a (possibly lazy) operation description."""
    return what if isinstance(what, str) else what()


def _is_open(connection: Connection) -> bool:
    """Whether a kept connection can still be used (a detached one raises when asked)."""
    try:
        return not connection.is_closed()
    except Exception:
        return False
