"""The starting process's own items: run first, stored once, already finished.

Items the starting process has room for are not inserted as rows to be claimed: it runs
them straight from the source and inserts each one once, finished, with its result (one
write per item instead of an insert, a claim and a completion). Items it has no room for
still go in pending, for any worker.

The price is that such items are nowhere in the database until their results are
written, so the enumeration checkpoint must not pass them: a kill would lose them.
:class:`LocalLedger` keeps the ranges of items taken that way and how many of each are
not written yet, and says where the checkpoint may stand: the first position not written
(for a reader, the last page boundary before it, with its cursor). The barrier counts as
read to the end only once the source is exhausted *and* every such item is written: the
statement that writes the last of them says so, or :meth:`LocalLedger.finish` does.

Several flushes write at once: each takes its ranges (:meth:`LocalLedger.ranges`), awaits
the database, then counts them written. Ranges are named by stable numbers (their order of
taking), not by list positions, so a flush that trims the front meanwhile cannot make
another one's names point elsewhere.

A resumed enumeration re-reads the source from the checkpoint; items past it may have been
stored already (written out of order, or inserted pending). The enumerator takes only
items past the highest stored position this way; others go the claimed way, where
inserting twice is harmless.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["LocalLedger"]

#: Ranges of fully written items are dropped from the front in steps of this many.
_TRIM = 256


class LocalLedger:
    """Ranges of items run here before being stored, and the checkpoint they allow.

    :param read: items read from the source so far (the checkpoint a resumed run starts at)
    :param cursor: the reader's cursor at ``read`` (``None`` for other sources)
    """

    __slots__ = (
        "_base",
        "_first",
        "_left",
        "_marks",
        "_read",
        "_safe",
        "_starts",
        "ended",
        "total",
        "final_sent",
    )

    def __init__(self, read: int, cursor: str | None) -> None:
        self._starts: list[int] = []
        self._left: list[int] = []
        # The stable number of the range at list position 0 (ranges trimmed so far).
        self._base = 0
        self._first = 0
        self._read = read
        # (end, cursor after it) of each reader page not yet behind the checkpoint.
        self._marks: deque[tuple[int, str | None]] = deque()
        self._safe: tuple[int, str | None] = (read, cursor)
        self.ended = False
        #: The source's total once known (up front, or at its end).
        self.total: int | None = None
        self.final_sent = False

    @property
    def read(self) -> int:
        """Items read from the source (stored, or taken here)."""
        return self._read

    def take(self, start: int, end: int) -> None:
        """Items ``start`` to ``end`` (exclusive) are taken here, not stored."""
        if end > start:
            self._starts.append(start)
            self._left.append(end - start)

    def advance(self, end: int, cursor: str | None, *, page: bool, last: bool) -> None:
        """Every item before ``end`` is stored or taken here.

        :param page: a reader's page ends there, and ``cursor`` continues after it
        :param last: the source is exhausted there
        """
        self._read = end
        if page:
            self._marks.append((end, cursor))
        if last:
            self.ended = True
            self.total = end

    def ranges(self, positions: Iterable[int]) -> dict[int, int]:
        """How many of ``positions`` (items taken here) fall in each range, by the range's
        stable number (valid until :meth:`written` counts them)."""
        found: dict[int, int] = {}
        starts = self._starts
        base = self._base
        for position in positions:
            at = base + bisect_right(starts, position, self._first) - 1
            found[at] = found.get(at, 0) + 1
        return found

    def _watermark(self, writing: dict[int, int] | None) -> int:
        left = self._left
        base = self._base
        for at in range(self._first, len(left)):
            remaining = left[at] - (writing.get(base + at, 0) if writing else 0)
            if remaining > 0:
                return self._starts[at]
        return self._read

    def checkpoint(self, writing: dict[int, int] | None = None) -> tuple[int, str | None]:
        """Where the checkpoint may stand once ``writing`` (see :meth:`ranges`) is stored:
        the first item not stored, or for a reader the last page boundary before it."""
        watermark = self._watermark(writing)
        marks = self._marks
        if not marks and self._safe[1] is None:
            return watermark, None
        safe = self._safe
        for end, cursor in marks:
            if end > watermark:
                break
            safe = (end, cursor)
        return safe

    def complete(self, writing: dict[int, int] | None = None) -> bool:
        """Whether the source is exhausted and every item is stored (with ``writing``)."""
        return self.ended and self._watermark(writing) >= self._read

    def written(self, writing: dict[int, int], *, last: bool) -> None:
        """``writing`` is stored (``last``: with the end of the source)."""
        left = self._left
        base = self._base
        for at, count in writing.items():
            # A range with items still being written is never trimmed: ``at - base`` is
            # its position whatever other flushes trimmed meanwhile.
            left[at - base] -= count
        first = self._first
        while first < len(left) and left[first] <= 0:
            first += 1
        self._first = first
        if first >= _TRIM:
            del self._starts[:first], self._left[:first]
            self._base = base + first
            self._first = 0
        watermark = self._watermark(None)
        marks = self._marks
        while marks and marks[0][0] <= watermark:
            self._safe = marks.popleft()
        if last:
            self.final_sent = True

    def due(self) -> bool:
        """Whether the end of the source still has to be recorded (everything is stored)."""
        return not self.final_sent and self.complete()
