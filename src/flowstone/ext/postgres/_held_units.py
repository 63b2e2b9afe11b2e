"""The units a barrier executor holds, and the starting process's enumerator's hand-over.

A :class:`HeldUnits` keeps the units (items, or batches) this process holds: claimed from
the barrier, or handed over by the enumerator as it inserts them (claimed on insert, or not
stored at all). Units wait in a queue until an executor takes one; a unit is held from when
it is taken until its results went to the result writer. At most ``capacity`` units are
held (``max_concurrent`` and half as many again, so that executors never idle through a
claim's round trip); items waiting in the queue were never run, so a kill re-runs only the
executing ones and the unwritten results.
"""

from __future__ import annotations

from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

from flowstone import StorageError

from ._scatter_codec import Unstorable, decode
from ._work_units import ClaimedUnit, Signal, UnstoredItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._barrier_rows import Claimed
    from ._work_units import WorkUnit

__all__ = ["HeldUnits"]


class HeldUnits:
    """The units one executor holds (see the module documentation).

    :param max_concurrent: units the executor runs at once
    :param on_added: called when units were queued (wakes executors)
    :param hand_over: whether the enumerator may hand this process items (unbatched
        barriers in the starting process)
    """

    def __init__(
        self, max_concurrent: int, on_added: Callable[[], None], *, hand_over: bool
    ) -> None:
        self.queue: deque[WorkUnit] = deque()
        self.units: dict[int, WorkUnit] = {}
        #: The most units held at once.
        self.capacity = max_concurrent + max_concurrent // 2
        #: Free slots worth a claim (a quarter of max_concurrent).
        self.claim_min = max(1, max_concurrent // 4)
        self._on_added = on_added
        self._accepting = hand_over and max_concurrent > 0
        self._reserved = 0
        self._freed = Signal()
        # The enumerator waits here for free slots to hand items over.
        self._freed_for_enumerator = Signal()
        self._wanted = 0

    def free(self) -> int:
        """Slots free now (units not held, and not reserved for the enumerator)."""
        return self.capacity - len(self.units) - self._reserved

    def positions(self) -> list[int]:
        """The item positions of every unit held."""
        return [i for unit in self.units.values() for i in unit.idx]

    async def wait_freed(self, seconds: float) -> None:
        """Wait (at most ``seconds``) until a claim's worth of slots may be free."""
        await self._freed.wait(seconds)

    def add_claimed(self, claimed: Claimed, *, allow_pickle: bool, where: str) -> None:
        """Queue units claimed from the barrier, decoding their items.

        An item that cannot be decoded makes its unit fail without running (with a
        :class:`StorageError` naming ``where`` and the item's key).
        """
        held = self.units
        queue = self.queue
        for unit_no, rows in claimed.units.items():
            if unit_no in held:
                # Recovered from this very worker while it was out of touch (its lock looked
                # free during a server restart) and claimed again: it is already running here.
                continue
            idx = [row[0] for row in rows]
            keys = [row[1] if row[1] is not None else str(row[0]) for row in rows]
            items: list[Any] = []
            error: BaseException | None = None
            for (_, _, text, raw), key in zip(rows, keys, strict=True):
                try:
                    items.append(decode(text, raw, allow_pickle=allow_pickle))
                except Unstorable as exc:
                    error = StorageError(f"{where}: cannot load item {key!r}: {exc}")
                    items.append(None)
            unit = ClaimedUnit(unit_no, idx, keys, items, error)
            held[unit_no] = unit
            queue.append(unit)
        self._on_added()

    def finished(self, unit_no: int) -> None:
        """The unit's results went to the writer: free its slot."""
        del self.units[unit_no]
        free = self.capacity - len(self.units) - self._reserved
        if free >= self.claim_min:
            self._freed.set()
        if self._wanted and free >= self._wanted:
            self._freed_for_enumerator.set()

    def stop_hand_over(self) -> None:
        """Take no more items from the enumerator (the executor stops, or runs no more)."""
        self._accepting = False
        self._freed_for_enumerator.set()

    # -- the enumerator's side ---------------------------------------------------------

    @property
    def accepting(self) -> bool:
        """Whether the enumerator may hand this process items (now or once slots free)."""
        return self._accepting

    def free_slots(self) -> int:
        """How many items the enumerator could hand over now (0 when it may hand none)."""
        if not self._accepting:
            return 0
        return max(0, self.free())

    @property
    def slots_worth_waiting_for(self) -> int:
        """Free slots worth waiting for before inserting a page (half of what may be held)."""
        return max(1, self.capacity // 2)

    async def wait_for_slots(self, want: int, seconds: float) -> tuple[int, bool]:
        """Wait (at most ``seconds``) until ``want`` slots are free.

        :return: the free slots, and whether they reached ``want``
        """
        free = self.free_slots()
        if free >= want or not self._accepting:
            return free, free >= want
        deadline = monotonic() + seconds
        try:
            while free < want and self._accepting:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                self._wanted = want
                await self._freed_for_enumerator.wait(remaining)
                free = self.free_slots()
        finally:
            self._wanted = 0
        return free, free >= want

    def reserve_slots(self, count: int) -> None:
        """Keep ``count`` slots for items being inserted claimed (see
        :meth:`take_claimed_on_insert`)."""
        self._reserved += count

    def take_claimed_on_insert(self, count: int, units: list[tuple[int, str, Any]]) -> None:
        """Queue items that were inserted claimed by this process; free ``count`` reserved
        slots.

        :param units: ``(idx, key, item)`` of each item claimed on insert
        """
        self._reserved -= count
        held = self.units
        queue = self.queue
        for idx, key, item in units:
            if idx in held:
                continue
            unit = ClaimedUnit(idx, [idx], [key], [item])
            held[idx] = unit
            queue.append(unit)
        if queue:
            self._on_added()

    def take_unstored(self, items: list[tuple[int, Any, str | None, bytes | None]]) -> None:
        """Queue items read from the source that are not stored: their results are
        inserted finished (see ``_scatter_local``).

        :param items: ``(idx, item, json_text, raw)``; the text and raw form are ``None``
            when made on demand (a plain item)
        """
        held = self.units
        queue = self.queue
        for idx, item, text, raw in items:
            unit = UnstoredItem(idx, item, None if text is None and raw is None else (text, raw))
            held[idx] = unit
            queue.append(unit)
        if queue:
            self._on_added()
