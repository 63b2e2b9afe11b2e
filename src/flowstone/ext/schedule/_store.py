"""Where ticks are claimed and kept: the :class:`ScheduleStore` protocol and its memory one.

A tick is fired by the scheduler that *claims* it: the claim inserts the tick's row
(unique per (name, key)), so of any number of schedulers sharing a store exactly one
gets it. The claim carries a lease (``lease_until``) that its holder renews while the
run goes on; a claim whose lease ran out (its process died) is taken over by another
scheduler (:meth:`ScheduleStore.reclaim`), which fires the same run id, so the tick is
neither lost nor run twice. Times are the runtime clock's, passed in by the scheduler.

:class:`MemoryScheduleStore` gives these semantics inside one process;
``PostgresStore`` provides a durable one shared by processes (see
:func:`schedule_store_for`).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._types import TickRecord, TickStatus

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    from flowstone import Runtime

__all__ = ["MemoryScheduleStore", "ScheduleStore", "ScheduleStoreProvider", "schedule_store_for"]


@runtime_checkable
class ScheduleStore(Protocol):
    """Tick claims, tick history and sensor cursors.

    Contract: :meth:`claim` and :meth:`skip` insert a tick only when (name, key) has no
    row yet, atomically (exactly one of concurrent claimants wins); :meth:`renew` and
    :meth:`finish` change a claim only for its current owner while it is ``claimed``;
    :meth:`commit_poll` stores a sensor's cursor and its new requests in one atomic step
    that fails when the cursor moved since it was read; a key once stored is never
    stored again (run keys de-duplicate permanently).
    """

    async def register(self, name: str, now: datetime) -> datetime:
        """Record that ``name`` exists (once); return when it was first registered."""
        ...

    async def claim(self, record: TickRecord) -> bool:
        """Insert ``record`` (status ``claimed``, with owner and lease) unless the tick
        has a row; whether this call inserted it."""
        ...

    async def skip(self, records: Sequence[TickRecord]) -> int:
        """Insert the skipped ``records`` whose ticks have no row; how many were new."""
        ...

    async def renew(self, name: str, key: str, owner: str, lease_until: datetime) -> bool:
        """Extend the lease of ``owner``'s claim; ``False`` when it is no longer its."""
        ...

    async def finish(
        self,
        name: str,
        key: str,
        owner: str,
        status: TickStatus,
        finished_at: datetime,
        reason: str | None = None,
    ) -> bool:
        """Record the outcome of ``owner``'s claim; ``False`` when it is no longer its."""
        ...

    async def reclaim(
        self, names: Collection[str], owner: str, now: datetime, lease_until: datetime
    ) -> list[TickRecord]:
        """Take over the claims of ``names`` whose lease ended before ``now``."""
        ...

    async def active(self, name: str, now: datetime) -> list[TickRecord]:
        """The claims of ``name`` whose lease holds at ``now`` (runs going on)."""
        ...

    async def earliest_lease(self, names: Collection[str], owner: str) -> datetime | None:
        """When the first claim of ``names`` held by another owner than ``owner`` ends."""
        ...

    async def get(self, name: str, key: str) -> TickRecord | None:
        """One tick's row, or ``None``."""
        ...

    async def history(self, name: str, *, limit: int = 100) -> list[TickRecord]:
        """The ticks of ``name``, newest (by tick instant) first."""
        ...

    async def cursor(self, name: str) -> str | None:
        """A sensor's stored cursor (``None`` before its first commit)."""
        ...

    async def commit_poll(
        self,
        name: str,
        expected: str | None,
        cursor: str | None,
        records: Sequence[TickRecord],
    ) -> list[TickRecord] | None:
        """If the sensor's cursor is still ``expected``, store ``cursor`` and insert the
        ``records`` (claimed) whose keys are new; return those. ``None`` when the cursor
        moved (another scheduler committed a poll first): nothing is stored."""
        ...


@runtime_checkable
class ScheduleStoreProvider(Protocol):
    """A materialization store that brings its own schedule store (``PostgresStore``)."""

    def schedule_store(self) -> ScheduleStore:
        """The schedule store sharing this store's database."""
        ...


def schedule_store_for(runtime: Runtime) -> ScheduleStore:
    """The schedule store a scheduler on ``runtime`` uses by default: the materialization
    store's own (durable with ``PostgresStore``), else one in memory per runtime."""
    store = runtime.store
    if isinstance(store, ScheduleStoreProvider):
        return store.schedule_store()
    found = _MEMORY.get(runtime)
    if found is None:
        found = _MEMORY[runtime] = MemoryScheduleStore()
    return found


_MEMORY: weakref.WeakKeyDictionary[Runtime, MemoryScheduleStore] = weakref.WeakKeyDictionary()


class MemoryScheduleStore:
    """A :class:`ScheduleStore` in memory: the same semantics inside one process."""

    def __init__(self) -> None:
        self._registered: dict[str, datetime] = {}
        self._ticks: dict[tuple[str, str], TickRecord] = {}
        self._claimed: dict[str, set[str]] = {}
        self._cursors: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"MemoryScheduleStore(ticks={len(self._ticks)})"

    async def register(self, name: str, now: datetime) -> datetime:
        """Record ``name`` (once); when it was first registered."""
        return self._registered.setdefault(name, now)

    async def claim(self, record: TickRecord) -> bool:
        """Insert the claimed ``record`` unless its tick has a row."""
        if (record.name, record.key) in self._ticks:
            return False
        self._put(record)
        return True

    def _put(self, record: TickRecord) -> None:
        self._ticks[record.name, record.key] = record
        claimed = self._claimed.setdefault(record.name, set())
        if record.status is TickStatus.CLAIMED:
            claimed.add(record.key)
        else:
            claimed.discard(record.key)

    def _claims(self, names: Collection[str]) -> list[TickRecord]:
        return [self._ticks[name, key] for name in names for key in self._claimed.get(name, ())]

    async def skip(self, records: Sequence[TickRecord]) -> int:
        """Insert the skipped ``records`` whose ticks are new."""
        added = 0
        for record in records:
            if (record.name, record.key) not in self._ticks:
                self._put(record)
                added += 1
        return added

    def _held(self, name: str, key: str, owner: str) -> TickRecord | None:
        row = self._ticks.get((name, key))
        if row is None or row.owner != owner or row.status is not TickStatus.CLAIMED:
            return None
        return row

    async def renew(self, name: str, key: str, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s lease."""
        row = self._held(name, key, owner)
        if row is None:
            return False
        self._put(row.replace(lease_until=lease_until))
        return True

    async def finish(
        self,
        name: str,
        key: str,
        owner: str,
        status: TickStatus,
        finished_at: datetime,
        reason: str | None = None,
    ) -> bool:
        """Record the outcome of ``owner``'s claim."""
        row = self._held(name, key, owner)
        if row is None:
            return False
        self._put(
            row.replace(status=status, finished_at=finished_at, reason=reason, lease_until=None)
        )
        return True

    async def reclaim(
        self, names: Collection[str], owner: str, now: datetime, lease_until: datetime
    ) -> list[TickRecord]:
        """Take over the expired claims of ``names``."""
        taken = []
        for row in self._claims(names):
            if row.lease_until is not None and row.lease_until < now:
                row = row.replace(owner=owner, lease_until=lease_until)
                self._put(row)
                taken.append(row)
        return sorted(taken, key=lambda row: row.tick)

    async def active(self, name: str, now: datetime) -> list[TickRecord]:
        """The live claims of ``name``."""
        return [
            row
            for row in self._claims([name])
            if row.lease_until is not None and row.lease_until >= now
        ]

    async def earliest_lease(self, names: Collection[str], owner: str) -> datetime | None:
        """The end of the first lease of another owner among ``names``."""
        ends = [
            row.lease_until
            for row in self._claims(names)
            if row.owner != owner and row.lease_until is not None
        ]
        return min(ends, default=None)

    async def get(self, name: str, key: str) -> TickRecord | None:
        """One tick's row."""
        return self._ticks.get((name, key))

    async def history(self, name: str, *, limit: int = 100) -> list[TickRecord]:
        """The ticks of ``name``, newest first."""
        rows = [row for (row_name, _), row in self._ticks.items() if row_name == name]
        rows.sort(key=lambda row: (row.tick, row.key), reverse=True)
        return rows[:limit]

    async def cursor(self, name: str) -> str | None:
        """A sensor's cursor."""
        return self._cursors.get(name)

    async def commit_poll(
        self,
        name: str,
        expected: str | None,
        cursor: str | None,
        records: Sequence[TickRecord],
    ) -> list[TickRecord] | None:
        """Store the cursor and the new requests, if the cursor is still ``expected``."""
        if self._cursors.get(name) != expected:
            return None
        new = []
        for record in records:
            if (record.name, record.key) not in self._ticks:
                self._put(record)
                new.append(record)
        if cursor is not None:
            self._cursors[name] = cursor
        return new
