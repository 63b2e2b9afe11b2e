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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

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

    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not self.records and not self.values


class WriteBuffer:
    """Pending records and values, and the batches being written."""

    __slots__ = ("open_keys", "records", "values", "writing")

    def __init__(self) -> None:
        self.records: dict[RecordKey, MaterializationRecord] = {}
        self.values: dict[ValueKey, PendingValue] = {}
        #: Records saved as non-terminal whose terminal record has not come yet.
        self.open_keys: set[RecordKey] = set()
        self.writing: list[Batch] = []

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
        self.writing.append(batch)
        return batch

    def track(self, values: Iterable[ValueKey]) -> Batch:
        """An in-flight batch that only orders other writes of ``values`` (deletes, tables)."""
        batch = Batch()
        for key in values:
            self.values.pop(key, None)
            batch.values[key] = _MARKER
        self.writing.append(batch)
        return batch

    async def wait_turn(self, batch: Batch) -> None:
        """Wait until every earlier in-flight batch sharing a key with ``batch`` is done."""
        for earlier in list(self.writing):
            if earlier is batch:
                return
            if not earlier.finished and _overlaps(earlier, batch):
                if earlier.done is None:
                    earlier.done = anyio.Event()
                await earlier.done.wait()

    def finish(self, batch: Batch, *, ok: bool) -> None:
        """End ``batch``. When it failed, put back the entries it carried for others (unless
        newer ones replaced them); the caller's own entry is dropped, its error raised."""
        try:
            self.writing.remove(batch)
        except ValueError:
            pass
        if not ok:
            for key, record in batch.records.items():
                if key != batch.own_record:
                    self.records.setdefault(key, record)
            for vkey, value in batch.values.items():
                if value is not _MARKER and vkey != batch.own_value:
                    self.values.setdefault(vkey, value)
        batch.finished = True
        if batch.done is not None:
            batch.done.set()

    def abandon_in_flight(self) -> None:
        """Put the entries of batches that can never finish (their event loop is gone) back."""
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

    def uncommitted_records(self) -> dict[RecordKey, MaterializationRecord]:
        """Records not yet committed, newest version of each key."""
        found: dict[RecordKey, MaterializationRecord] = {}
        for batch in self.writing:
            found.update(batch.records)
        found.update(self.records)
        return found


_MARKER = PendingValue("", None, "", "", None, None, None)


def _overlaps(a: Batch, b: Batch) -> bool:
    if a.records and b.records and not a.records.keys().isdisjoint(b.records.keys()):
        return True
    return bool(a.values and b.values and not a.values.keys().isdisjoint(b.values.keys()))
