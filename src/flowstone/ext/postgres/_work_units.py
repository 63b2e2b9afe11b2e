"""What a barrier executor holds: claimed units, items taken unstored, and its wake-ups."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["ClaimedUnit", "ExecutorStats", "Signal", "UnstoredItem", "WorkUnit"]


class Signal:
    """Wakes every task waiting when it is set; a set with nobody waiting costs nothing."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def set(self) -> None:
        """Wake every task waiting now."""
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self, seconds: float = math.inf) -> None:
        """Wait until the next :meth:`set` (or ``seconds``)."""
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        if seconds == math.inf:
            await event.wait()
            return
        with anyio.move_on_after(seconds):
            await event.wait()


@dataclass(slots=True)
class ClaimedUnit:
    """Stored items that run as one call (one item, or one batch), claimed by this process.

    :param index: the unit's number (the item's position, or the batch's number)
    :param idx: the positions of its items
    :param keys: their keys
    :param items: the items, decoded
    :param error: why the items could not be decoded (they fail without running)
    """

    index: int
    idx: list[int]
    keys: list[str]
    items: list[Any]
    error: BaseException | None = None

    #: Taken from the source by the starting process, not stored yet (an UnstoredItem).
    local = False


class UnstoredItem:
    """An item the starting process took from the source without storing it first.

    Its result is inserted finished (see ``_scatter_local``). One is made for every such
    item, so it is kept small; the list views serve the general path.

    :param index: the item's position in the source
    :param item: the item
    :param stored: the item as stored when it fails, ``(json_text, raw)`` (``None``: made
        on demand)
    """

    __slots__ = ("index", "item", "stored")

    local = True
    error = None

    def __init__(self, index: int, item: Any, stored: tuple[str | None, bytes | None] | None):
        self.index = index
        self.item = item
        self.stored = stored

    @property
    def idx(self) -> list[int]:
        """The item's position, as a one-item list."""
        return [self.index]

    @property
    def keys(self) -> list[str]:
        """The item's (default) key, as a one-item list."""
        return [str(self.index)]

    @property
    def items(self) -> list[Any]:
        """The item, as a one-item list."""
        return [self.item]


#: What an executor runs: a claimed unit, or an item taken unstored.
WorkUnit = ClaimedUnit | UnstoredItem


@dataclass(slots=True)
class ExecutorStats:
    """What one executor did: units and items run here, results that counted."""

    units: int = 0
    items: int = 0
    applied: int = 0
