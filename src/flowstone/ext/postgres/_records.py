"""Materialization records in PostgreSQL: written behind the run in order, batched with
their values, and read back with this process's own writes not committed yet.

:class:`RecordStorage` is the part of :class:`~flowstone.ext.postgres.PostgresStore` that
keeps records and the values committed with them, on the database layer
(:class:`~._database.PostgresDatabase`, whose :meth:`call` runs every statement); the store
provides the queries and the write buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import asyncpg

from flowstone import MaterializationRecord, Status, StorageError

from ._database import PostgresDatabase
from ._errors import describe
from ._rows import (
    record_from_row,
    record_row,
    started_key,
    value_row,
    where_names,
    where_record,
    write_arguments,
)
from ._sql import partition_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from typing import TypeAlias

    from ._background import BackgroundWork
    from ._buffer import Batch, PendingValue, RecordKey, WriteBuffer
    from ._queries import Queries
    from ._sql import Connection

    #: What an operation does, for messages: the text, or a function making it when needed.
    What: TypeAlias = str | Callable[[], str]

__all__ = ["RecordStorage", "ValueWriter"]

T = TypeVar("T")

_log = logging.getLogger("flowstone.postgres")


class ValueWriter(Protocol):
    """What the ``postgres`` IO manager and table mode need of a store: its statements,
    the one way to run them, and values that commit with their asset's record.

    :class:`RecordStorage` implements it: a value stored while its asset's record is still
    to be written waits and commits with that record in one statement; reads see values
    this process has not committed yet; a delete or a table write is ordered with the
    in-flight writes of the same value.
    """

    @property
    def schema(self) -> str:
        """The schema the values are in."""
        ...

    @property
    def queries(self) -> Queries:
        """The store's statements for that schema."""
        ...

    async def call(
        self,
        what: What,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        idempotent: bool = True,
    ) -> T:
        """Run ``operation`` on a connection, with the store's retries and error mapping."""
        ...

    async def write_value(self, value: PendingValue, what: What) -> None:
        """Store an encoded value (committed with its record when that one is pending)."""
        ...

    def pending_value(self, asset: str, partition: str | None) -> PendingValue | None:
        """The newest value of (asset, partition) not committed yet, or ``None``."""
        ...

    def pending_partitions(self, asset: str) -> dict[str, str | None]:
        """Partition ids (with their keys) of ``asset``'s values not committed yet."""
        ...

    def value_write_in_order(
        self, asset: str, partition: str | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Order a delete or a table write of (asset, partition) with the other writes."""
        ...


class RecordStorage(PostgresDatabase):
    """Records and the values that commit with them (see the module), on the database
    layer."""

    queries: Queries
    flush_interval: float
    write_behind: bool
    _buffer: WriteBuffer
    _background: BackgroundWork
    #: Cancels the delayed flush of waiting records, while one is scheduled.
    _flush_timer: anyio.CancelScope | None
    #: Set while records begun behind their run are being written (in this event loop).
    _writing: anyio.Event | None

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
            if self._flush_timer is None:
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
        if self._writing is None or not self._background.running:
            self._writing = anyio.Event()
            self._background.start_soon(self._write_begun)
        return future

    async def _write_begun(self) -> None:
        """Write begun records, the waiting ones together, until none waits."""
        buffer = self._buffer
        try:
            while buffer.begun_waiting():
                batch = buffer.take()
                fresh = len(batch.records) == 1 and not buffer.fresh.isdisjoint(batch.records)
                try:
                    await self._write(batch, "save succeeded records", fresh=fresh)
                except Exception as exc:
                    # Their savers get the error (the buffer failed them with it).
                    _log.debug("could not save succeeded records: %s", describe(exc))
                    return
        finally:
            writing, self._writing = self._writing, None
            if writing is not None:
                writing.set()

    async def _wait_for_writer(self) -> None:
        """Until records begun in this event loop are written (or failed)."""
        writing = self._writing
        if writing is not None and self._background.running:
            await writing.wait()

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
        if self._flush_timer is not None:
            return
        self._flush_timer = timer = anyio.CancelScope()
        self._background.start_soon(lambda: self._flush_later(timer))

    async def _flush_later(self, timer: anyio.CancelScope) -> None:
        """Write waiting records ``flush_interval`` after the first (unless cancelled)."""
        with timer:
            await anyio.sleep(self.flush_interval)
        if self._flush_timer is timer:
            self._flush_timer = None
        if timer.cancel_called or not self._buffer:
            return
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
            if self._flush_timer is None:
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
