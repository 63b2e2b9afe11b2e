"""The PostgreSQL plugin's bottom layer: the pool, a connection for sequential work, retries
and error mapping, and one way to run a statement (:meth:`PostgresDatabase.call`).

Everything above it (records and values, the IO manager, the barrier statements, the gate
store, table mode) talks to the database through :meth:`~PostgresDatabase.call`, or takes a
connection of its own from :meth:`~PostgresDatabase.connect_dedicated` for session state
(advisory locks, ``LISTEN``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import asyncpg

from flowstone import ConfigurationError, RuntimeStateError

from ._errors import RetryPolicy, describe, is_transient, map_errors, retrying
from ._sql import qualified, validate_identifier

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from typing import TypeAlias

    from ._sql import Connection, Pool

    #: What an operation does, for messages: the text, or a function making it when needed.
    What: TypeAlias = str | Callable[[], str]

__all__ = ["PostgresDatabase"]

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


def _text(what: What) -> str:
    """The text of a (possibly lazy) operation description."""
    return what if isinstance(what, str) else what()


def _is_open(connection: Connection) -> bool:
    """Whether a kept connection can still be used (a detached one raises when asked)."""
    try:
        return not connection.is_closed()
    except Exception:
        return False


class PostgresDatabase:
    """A pool on one schema, opened in one event loop at a time (a base of
    :class:`~flowstone.ext.postgres.PostgresStore`, which adds the schema's migrations and
    what is stored).

    :param dsn: a ``postgresql://`` connection string (or pass ``pool=``)
    :param schema: the PostgreSQL schema holding flowstone's tables
    :param pool: an existing asyncpg pool to use instead of creating one; it is not closed
    :param min_size: the least connections the own pool keeps
    :param max_size: the most connections opened (the pool and the one kept)
    :param retry: how long and how often transient failures are retried
    :param connect_options: further keyword arguments for ``asyncpg.create_pool``
    :raises ConfigurationError: neither or both of ``dsn`` and ``pool``, a bad schema name,
        or bad pool sizes
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        schema: str,
        pool: Pool | None,
        min_size: int,
        max_size: int,
        retry: RetryPolicy | None,
        connect_options: Mapping[str, Any] | None,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise ConfigurationError("PostgresStore needs either a dsn or a pool=, not both")
        try:
            validate_identifier(schema, "schema name")
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigurationError(f"invalid pool size: min_size={min_size}, max_size={max_size}")
        self.dsn = dsn
        self._schema = schema
        self._given_pool = pool
        self._min_size = min_size
        self._max_size = max_size
        self.retry_policy = retry or RetryPolicy()
        self._connect_options = dict(connect_options or {})
        self._pool: Pool | None = None
        #: A connection of the store's own for sequential work, used while it is free.
        self._primary: asyncpg.Connection[asyncpg.Record] | None = None
        self._primary_busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open_lock: tuple[asyncio.AbstractEventLoop, anyio.Lock] | None = None
        #: Whether the server answered once (only then are failures to connect retried).
        self._reached = False

    async def open(self) -> None:
        """Open the pool in this event loop (the store also brings its schema up to date)."""
        async with self._lock():
            await self._open_pool()

    def _forget_loop(self) -> None:
        """Drop what belongs to an event loop that is gone (the store's buffers)."""

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
            self._forget_loop()
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

    async def connect_listener(
        self,
        channel: str,
        on_notify: Callable[..., None],
        on_lost: Callable[..., None],
    ) -> asyncpg.Connection[asyncpg.Record]:
        r"""A dedicated connection (:meth:`connect_dedicated`) that ``LISTEN``\ s on
        ``channel``: asyncpg calls ``on_notify`` for each notification and ``on_lost`` when
        the connection ends. The caller closes it; one that failed to listen is closed here.
        """
        conn = await self.connect_dedicated()
        try:
            conn.add_termination_listener(on_lost)
            await conn.add_listener(channel, on_notify)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
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
                    self._primary = primary = await self.connect_dedicated()
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
