"""Deferred writes: how one asset costs one round trip.

The materializer saves an asset's ``running`` record, stores its value, then saves its
terminal record. The store keeps the ``running`` record (and the value stored while the
asset's record is open) in memory and writes them together with the terminal record in
one statement, so the value and its record land atomically. A ``running`` record that
waits longer than the flush interval (a slow asset) is written on its own, so other
processes see it.

Ordering per key is kept by batches: a write takes everything pending into a batch and
waits for earlier in-flight batches that share a key (a record and a value of the same
asset count as sharing one). A failed batch puts back the ``running`` records and values
it carried for assets whose records are still open (unless newer ones replaced them); the
caller's own entries, and the value waiting for its record, are dropped and its error
raised to the caller, so one value the database refuses fails its asset only. A value
whose asset's terminal record was already taken into a later batch is dropped, and that
batch fails too (its record must not land without its value).

Succeeded records can also be *begun* (written behind the run, see
:class:`~flowstone.protocols.PipelinedRecordStore`): each waits here with a future that ends
when a batch carrying it commits. Batches carrying begun records are written one after
another, in the order taken, so begun records become durable in the order begun; when one
of those batches fails, every begun record still waiting fails with it and is dropped (a
record must not be stored when a record begun before it is not).

A succeeded record that failed to land leaves its data version marked as not stored, and a
succeeded record naming it as an input version is refused, so a record whose input's
record did not land is never stored either (however the writes interleave).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from flowstone import Status, StorageError

from ._rows import where_names, where_record

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

    __slots__ = (
        "durable",
        "fresh",
        "not_stored",
        "open_keys",
        "records",
        "values",
        "writing",
    )

    def __init__(self) -> None:
        self.records: dict[RecordKey, MaterializationRecord] = {}
        self.values: dict[ValueKey, PendingValue] = {}
        #: Records saved as non-terminal whose terminal record has not come yet.
        self.open_keys: set[RecordKey] = set()
        self.writing: list[Batch] = []
        #: Begun records not yet durable: the record, and what its saver waits on.
        self.durable: dict[RecordKey, tuple[MaterializationRecord, asyncio.Future[None]]] = {}
        #: Begun records whose ``running`` record waited here (most likely not stored yet).
        self.fresh: set[RecordKey] = set()
        #: (asset, data version) of succeeded records whose write failed.
        self.not_stored: set[tuple[str, str]] = set()

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
        durable = self.durable
        if record is not None:
            key, replacing = record[0], batch.records.get(record[0])
            batch.records[key] = record[1]
            batch.own_record = key
            begun = durable.get(key) if replacing is not None and durable else None
            if begun is not None and begun[0] is replacing:
                # A begun record replaced before it was written: it lands with this one.
                durable[key] = (record[1], begun[1])
        if value is not None:
            vkey = (value.asset, value.partition_id)
            batch.values[vkey] = value
            batch.own_value = vkey
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
        self.durable[key] = (record, future)
        return future

    def refused(self, key: RecordKey, record: MaterializationRecord) -> StorageError | None:
        """Why the terminal ``record``, about to be saved, must not be stored: it names an
        input version whose record failed to land (then its value is dropped too), or
        ``None`` when it may be."""
        not_stored = self.not_stored
        if not not_stored or record.status is not Status.SUCCEEDED:
            return None
        # Saved again: records begun or saved after it are written after it, or fail with it.
        not_stored.discard((record.asset, record.data_version or ""))
        for dep, version in record.input_versions.items():
            if (dep, version) in not_stored:
                self.mark_not_stored(record)
                self.open_keys.discard(key)
                self.values.pop((key[1], key[2]), None)
                return StorageError(
                    f"could not save the record of {where_record(record)}: the record of its "
                    f"input {dep!r} (version {version!r}) could not be stored"
                )
        return None

    def mark_not_stored(self, record: MaterializationRecord) -> None:
        """Remember that the succeeded ``record`` did not land (records naming its version
        as an input are refused)."""
        if record.status is Status.SUCCEEDED and record.data_version is not None:
            self.not_stored.add((record.asset, record.data_version))

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
        for key, (record, future) in durable.items():
            self.records.pop(key, None)
            self.values.pop((key[1], key[2]), None)
            self.mark_not_stored(record)
            if not future.done():
                own = StorageError(f"could not save the record of {where_record(record)}: {error}")
                own.__cause__ = error
                future.set_exception(own)

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
                begun = durable.get(key)
                if begun is not None and begun[0] is record:  # not an earlier record of it
                    del durable[key]
                    self.fresh.discard(key)
                    if not begun[1].done():
                        begun[1].set_result(None)
        if not ok:
            self._put_back(batch, error)
        batch.finished = True
        if batch.done is not None:
            batch.done.set()

    def _put_back(self, batch: Batch, error: BaseException | None) -> None:
        """After ``batch`` failed: put back what it carried for assets still open, drop the
        rest (its savers hear of it), and fail the later batches that cannot land now."""
        error = _as_error(error or StorageError("could not save succeeded records"))
        # Begun records fail with the batch (their savers hear of it): not put back. Nor is
        # the caller's own record, nor the value that waited for it.
        dropped = {batch.own_record, *batch.begun}
        lost = {(key[1], key[2]) for key in dropped if key is not None}
        for key, record in batch.records.items():
            if key in dropped or record.status.terminal:
                self.mark_not_stored(record)
            else:
                self.records.setdefault(key, record)
        for vkey, value in batch.values.items():
            if value is _MARKER or vkey == batch.own_value or vkey in lost:
                continue
            key = (value.run_id or "", value.asset, value.partition_id)
            if value.run_id is None or key in self.open_keys:
                self.values.setdefault(vkey, value)
                continue
            # Its asset's terminal record was taken already: it must not land without it.
            for later in self.writing:
                if not later.finished and key in later.records and later.abort is None:
                    later.abort = StorageError(
                        f"could not save the record of {where_names(value.asset, value.partition)}"
                        f" in run {value.run_id!r}: its value could not be stored: {error}"
                    )
                    later.abort.__cause__ = error
        if batch.begun:
            self.fail_begun(error)

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
    if a.values and b.values and not a.values.keys().isdisjoint(b.values.keys()):
        return True
    # A value and a record of the same asset: the record must not land before its value.
    return _record_meets_value(a, b) or _record_meets_value(b, a)


def _record_meets_value(a: Batch, b: Batch) -> bool:
    """Whether a record of ``a`` is of an asset (and partition) with a value in ``b``."""
    if not a.records or not b.values:
        return False
    values = b.values
    return any((key[1], key[2]) in values for key in a.records)
