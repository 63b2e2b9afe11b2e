"""Deferred writes: how one asset costs one round trip.

The materializer saves an asset's ``running`` record, stores its value, then saves its
terminal record. The store keeps the ``running`` record (and the value stored while the
asset's record is open) in memory and writes them together with the terminal record in
one statement, so the value and its record land atomically. A ``running`` record that
waits longer than the flush interval (a slow asset) is written on its own, so other
processes see it.

Ordering per key is kept by batches: a write takes everything pending into a batch and
waits for earlier in-flight batches that share a key. A failed batch puts back the entries
it carried for others (unless newer ones replaced them), so nothing taken for a failed
write is lost; the caller's own entry is dropped and its error raised to the caller.

Succeeded records can also be *begun* (written behind the run, see
:class:`~flowstone.protocols.PipelinedRecordStore`): each waits here with a future that ends
when a batch carrying it commits. Batches carrying begun records are written one after
another, in the order taken, so begun records become durable in the order begun; when one
of those batches fails, every begun record still waiting fails with it and is dropped (a
record must not be stored when a record begun before it is not).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from flowstone import Status, StorageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from flowstone import MaterializationRecord

__all__ = ["Batch", "PendingValue", "RecordKey", "ValueKey", "WriteBuffer"]

#: (run_id, asset, partition_id)
RecordKey = tuple[str, str, str]
#: (asset, partition_id)
ValueKey = tuple[str, str]


@dataclass(slots=True)
class PendingValue:
    """An encoded asset value waiting to be written (never changed once made)."""

    asset: str
    partition: str | None
    partition_id: str
    format: str
    json_text: str | None
    data: bytes | None
    run_id: str | None


@dataclass(slots=True)
class Batch:
    """Entries taken for one write statement."""

    records: dict[RecordKey, MaterializationRecord] = field(default_factory=dict)
    values: dict[ValueKey, PendingValue] = field(default_factory=dict)
    #: Set when the batch ends; made only when a later batch has to wait for it.
    done: anyio.Event | None = None
    finished: bool = False
    #: The entries of the caller whose write this is (its error reaches that caller).
    own_record: RecordKey | None = None
    own_value: ValueKey | None = None
    #: The begun records it carries (then it is written after every earlier such batch).
    begun: frozenset[RecordKey] = frozenset()
    #: Why it must not be written after all (an earlier batch of begun records failed).
    abort: BaseException | None = None

    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not self.records and not self.values


class WriteBuffer:
    """Pending records and values, and the batches being written."""

    __slots__ = ("durable", "fresh", "open_keys", "records", "values", "writing")

    def __init__(self) -> None:
        self.records: dict[RecordKey, MaterializationRecord] = {}
        self.values: dict[ValueKey, PendingValue] = {}
        #: Records saved as non-terminal whose terminal record has not come yet.
        self.open_keys: set[RecordKey] = set()
        self.writing: list[Batch] = []
        #: Begun records not yet durable, with what their savers wait on.
        self.durable: dict[RecordKey, asyncio.Future[None]] = {}
        #: Begun records whose ``running`` record waited here (most likely not stored yet).
        self.fresh: set[RecordKey] = set()

    def __bool__(self) -> bool:
        return bool(self.records or self.values)

    def take(
        self,
        record: tuple[RecordKey, MaterializationRecord] | None = None,
        value: PendingValue | None = None,
    ) -> Batch:
        """Move the pending entries (plus the caller's ``record``/``value``) into a new
        in-flight batch."""
        batch = Batch(records=self.records, values=self.values)
        self.records = {}
        self.values = {}
        # A replaced entry keeps its place: records are written in the order first saved.
        if record is not None:
            batch.records[record[0]] = record[1]
            batch.own_record = record[0]
        if value is not None:
            key = (value.asset, value.partition_id)
            batch.values[key] = value
            batch.own_value = key
        durable = self.durable
        if durable and not durable.keys().isdisjoint(batch.records.keys()):
            batch.begun = frozenset(durable.keys() & batch.records.keys())
        self.writing.append(batch)
        return batch

    def begin(self, key: RecordKey, record: MaterializationRecord) -> asyncio.Future[None]:
        """Keep a terminal record to be written behind the run; the future ends when it is
        durable (or fails with the write that carried it, or one before it)."""
        self.open_keys.discard(key)
        if key in self.records:
            self.fresh.add(key)
        self.records[key] = record
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self.durable[key] = future
        return future

    def begun_waiting(self) -> bool:
        """Whether a begun record waits to be taken into a batch."""
        records = self.records
        return any(key in records for key in self.durable)

    def track(self, values: Iterable[ValueKey]) -> Batch:
        """An in-flight batch that only orders other writes of ``values`` (deletes, tables)."""
        batch = Batch()
        for key in values:
            self.values.pop(key, None)
            batch.values[key] = _MARKER
        self.writing.append(batch)
        return batch

    def fail_begun(self, error: BaseException) -> None:
        """Fail every begun record still waiting, and drop it with its value."""
        error = _as_error(error)
        durable, self.durable = self.durable, {}
        self.fresh.clear()
        for batch in self.writing:
            if batch.begun and not batch.finished:
                batch.abort = error
        for key, future in durable.items():
            self.records.pop(key, None)
            self.values.pop((key[1], key[2]), None)
            if not future.done():
                future.set_exception(error)

    async def wait_turn(self, batch: Batch) -> None:
        """Wait until every earlier in-flight batch sharing a key with ``batch`` is done."""
        for earlier in list(self.writing):
            if earlier is batch:
                return
            if not earlier.finished and _overlaps(earlier, batch):
                if earlier.done is None:
                    earlier.done = anyio.Event()
                await earlier.done.wait()

    def finish(self, batch: Batch, *, ok: bool, error: BaseException | None = None) -> None:
        """End ``batch``. When it failed, put back the entries it carried for others (unless
        newer ones replaced them); the caller's own entry is dropped, its error raised.
        Begun records it carried are durable now; if it failed, every begun one fails."""
        try:
            self.writing.remove(batch)
        except ValueError:
            pass
        durable = self.durable
        if ok and durable:
            for key, record in batch.records.items():
                future = durable.get(key)
                if future is not None and self.records.get(key) is not record:
                    del durable[key]
                    self.fresh.discard(key)
                    if not future.done():
                        future.set_result(None)
        if not ok:
            # Begun records fail with the batch (their savers hear of it): not put back.
            begun = batch.begun
            dropped = {(key[1], key[2]) for key in begun}
            for key, record in batch.records.items():
                if key != batch.own_record and key not in begun:
                    self.records.setdefault(key, record)
            for vkey, value in batch.values.items():
                if value is not _MARKER and vkey != batch.own_value and vkey not in dropped:
                    self.values.setdefault(vkey, value)
            if begun:
                self.fail_begun(error or StorageError("could not save succeeded records"))
        batch.finished = True
        if batch.done is not None:
            batch.done.set()

    def abandon_in_flight(self) -> None:
        """Put the entries of batches that can never finish (their event loop is gone) back;
        whoever waited for begun records went with that loop."""
        self.durable = {}
        self.fresh.clear()
        writing, self.writing = self.writing, []
        for batch in writing:
            batch.own_record = batch.own_value = None
            batch.done = None  # an event of the old loop
            self.writing.append(batch)
            self.finish(batch, ok=False)

    def find_value(self, key: ValueKey) -> PendingValue | None:
        """The newest not yet committed value of ``key``, if any."""
        value = self.values.get(key)
        if value is not None:
            return value
        for batch in reversed(self.writing):
            value = batch.values.get(key)
            if value is not None:
                return None if value is _MARKER else value
        return None

    def value_keys(self, asset: str) -> dict[str, str | None]:
        """Partition ids (with their keys) of not yet committed values of ``asset``."""
        found: dict[str, str | None] = {}
        for batch in [*self.writing, None]:
            source = self.values if batch is None else batch.values
            for (name, pid), value in source.items():
                if name == asset and value is not _MARKER:
                    found[pid] = value.partition
        return found

    def newest_succeeded(self, asset: str, pid: str) -> MaterializationRecord | None:
        """The newest succeeded record of (asset, partition id) not yet committed, if any."""
        found: MaterializationRecord | None = None
        for source in [*(batch.records for batch in self.writing), self.records]:
            for key, record in source.items():
                if key[1] == asset and key[2] == pid and record.status is Status.SUCCEEDED:
                    found = record
        return found

    def uncommitted_records(self) -> dict[RecordKey, MaterializationRecord]:
        """Records not yet committed, newest version of each key."""
        found: dict[RecordKey, MaterializationRecord] = {}
        for batch in self.writing:
            found.update(batch.records)
        found.update(self.records)
        return found


_MARKER = PendingValue("", None, "", "", None, None, None)


def _as_error(error: BaseException) -> Exception:
    """What a begun record's saver raises for ``error``."""
    if isinstance(error, Exception):
        return error
    return StorageError("could not save succeeded records: the write was cancelled")


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a failed future's error as seen (its waiter may have been cancelled)."""
    if not future.cancelled():
        future.exception()


def _overlaps(a: Batch, b: Batch) -> bool:
    if a.begun and b.begun:
        return True
    if a.records and b.records and not a.records.keys().isdisjoint(b.records.keys()):
        return True
    return bool(a.values and b.values and not a.values.keys().isdisjoint(b.values.keys()))
