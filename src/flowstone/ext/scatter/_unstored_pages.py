"""Pages the starting process runs before it stores them (its own items first).

A process alone on a barrier (no other lease could claim its items) does not need to store
an item before running it: nobody else could take it. So :class:`~._barrier_scatter.BarrierScatter`
hands the pages it reads to :class:`UnstoredPages` instead of adding them pending; the
engine's feed runs them before it claims anything, and once every item of the page at the
head has its result, the recorder stores the page, its results and the checkpoint after
it in one step (``BarrierStore.add_finished``). Pages are stored in source order, so the
stored checkpoint never passes a page that is not stored: a crash loses only the work of
the pages in flight, which a resumed scatter reads and runs again.

When another worker appears, the pages are handed over (:meth:`UnstoredPages.hand_over`):
each is stored at once, a running page with the results it has and its other items held
by this process, a page not started yet as pending items anyone may claim. A slow item
does not hold up the pages after it either: when the pages are full and the head page has
run for a while, it is stored as it stands (:meth:`UnstoredPages.unstick`), its running
items held by this process, their results recorded as they come.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowstone._core.barrier_store import SourceCheckpoint
    from flowstone._core.protocols import ScatterItemResult

__all__ = ["UnstoredPage", "UnstoredPages"]


class UnstoredPage:
    """One page read from the source and not stored yet.

    :param items: its ``(index, key, item)`` in source order (contiguous positions)
    :param checkpoint: the source checkpoint after it
    """

    __slots__ = (
        "checkpoint",
        "end",
        "items",
        "released",
        "remaining",
        "results",
        "start",
        "taken",
        "taken_at",
    )

    def __init__(self, items: list[tuple[int, str, Any]], checkpoint: SourceCheckpoint) -> None:
        self.items = items
        self.checkpoint = checkpoint
        self.start = items[0][0] if items else 0
        self.end = items[-1][0] + 1 if items else 0
        #: The results of its items that finished.
        self.results: list[ScatterItemResult] = []
        #: Items without a result yet.
        self.remaining = len(items)
        #: Whether the feed handed it to the workers, and when (the loop's clock).
        self.taken = False
        self.taken_at = 0.0
        #: Set to store it before it is finished (see :meth:`UnstoredPages.unstick`).
        self.released = False

    @property
    def finished(self) -> bool:
        """Whether every item has its result."""
        return self.remaining == 0


class UnstoredPages:
    """The pages a starting process runs before storing them, in source order.

    :param limit: pages read ahead at most (queued, running or waiting to be stored);
        :meth:`put` waits for room
    """

    def __init__(self, limit: int = 3) -> None:
        self._limit = max(1, limit)
        self._pages: deque[UnstoredPage] = deque()
        self._storing = 0
        self._changed = anyio.Event()
        self._on_ready: Callable[[], None] | None = None
        self._handing_over = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._pages)

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the head page is ready to be stored."""
        self._on_ready = callback

    async def put(
        self,
        items: list[tuple[int, str, Any]],
        checkpoint: SourceCheckpoint,
        *,
        within: float = math.inf,
    ) -> bool:
        """Queue a page to run, waiting while ``limit`` pages are not stored yet.

        :param within: seconds to wait for room at most
        :return: whether the page was queued (``False``: no room in time, or closed)
        """
        with anyio.move_on_after(within):
            while len(self._pages) >= self._limit and not self._closed:
                await self._wait()
        if self._closed or len(self._pages) >= self._limit:
            return False
        self._pages.append(UnstoredPage(items, checkpoint))
        if len(self._pages) == 1 and not items:
            self._ready()
        return True

    def take(self) -> UnstoredPage | None:
        """The next page to run, or ``None`` (none, or they are being handed over)."""
        if self._handing_over:
            return None
        for page in self._pages:
            if not page.taken and page.items:
                page.taken = True
                page.taken_at = anyio.current_time()
                return page
        return None

    def finish(self, result: ScatterItemResult) -> bool:
        """Keep ``result`` with its page; ``False`` when it is of no unstored page."""
        index = result.index
        for page in self._pages:
            if page.start <= index < page.end:
                page.results.append(result)
                page.remaining -= 1
                if not page.remaining and page is self._pages[0]:
                    self._ready()
                return True
        return False

    def ready(self) -> bool:
        """Whether the head page is ready to be stored (see :meth:`pop_ready`)."""
        pages = self._pages
        if not pages:
            return False
        head = pages[0]
        return head.finished or head.released or self._handing_over

    def pop_ready(self) -> UnstoredPage | None:
        """Take the head page out when it is ready to be stored: finished, or any page
        while they are handed over. Call :meth:`stored` once it is stored; results of its
        items that finish meanwhile are of no unstored page (:meth:`finish` says so)."""
        if not self.ready():
            return None
        self._storing += 1
        return self._pages.popleft()

    def stored(self) -> None:
        """A page from :meth:`pop_ready` is stored."""
        self._storing -= 1
        if self._pages and self._pages[0].finished:
            self._ready()
        self._wake()

    def unstick(self, after: float) -> bool:
        """Have the head page stored as it stands when the pages are full and it has run
        for ``after`` seconds without finishing (a slow item holds it): the pages after it
        are then stored in turn, and more are read.

        :return: whether the head page was released
        """
        pages = self._pages
        if len(pages) < self._limit:
            return False
        head = pages[0]
        if not head.taken or head.finished or head.released:
            return False
        if anyio.current_time() - head.taken_at < after:
            return False
        head.released = True
        self._ready()
        return True

    def put_back(self, page: UnstoredPage) -> None:
        """A page from :meth:`pop_ready` was not stored (the write failed or was
        cancelled): it goes back at the head, so no later page is stored before it (the
        checkpoint would pass items that are stored nowhere)."""
        self._storing -= 1
        self._pages.appendleft(page)
        self._wake()

    async def hand_over(self) -> None:
        """Have every page stored now, finished or not (another worker appeared): pages
        that run keep their items held by this process, the others go in pending. Returns
        once they are stored; pages put later run unstored again."""
        self._handing_over = True
        try:
            if self._pages:
                self._ready()
            await self.drain()
        finally:
            self._handing_over = False

    async def drain(self) -> None:
        """Wait until every page is stored (or the pages are closed)."""
        while (self._pages or self._storing) and not self._closed:
            await self._wait()

    def close(self) -> None:
        """Drop the pages not stored; waiting :meth:`put` and :meth:`drain` return."""
        self._closed = True
        self._pages.clear()
        self._wake()

    def _ready(self) -> None:
        if self._on_ready is not None:
            self._on_ready()

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _wait(self) -> None:
        await self._changed.wait()
