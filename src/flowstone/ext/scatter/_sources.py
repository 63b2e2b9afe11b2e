"""Scatter sources as one lazily pulled stream of ``(index, item)`` pairs: :class:`ItemFeed`.

Many workers share one feed. The current page is a plain iterator that they all pull from
without awaiting (the cheap path); when it runs dry, one of them fetches the next page
under a lock while the others wait. What a feed holds at any time is one page:

* an in-memory collection (``list``, ``tuple``, ``range``, anything with ``len``) is one
  page, its total known up front;
* a plain iterator or generator is read ``page_size`` items at a time;
* an async iterable is read one item at a time (it may be slow to produce them);
* an :class:`~flowstone.protocols.ItemReader` is read page by page with its cursor; its
  ``count()`` gives the total when cheap.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
)
from typing import Any

import anyio

from flowstone.protocols import ItemReader

__all__ = ["ItemFeed", "open_feed", "size_of"]

Pair = tuple[int, Any]
_Fetch = Callable[[], Awaitable[tuple[Collection[Any], bool]]]

_EMPTY: Iterator[Pair] = iter(())


class ItemFeed:
    """A shared, lazily read stream of ``(index, item)`` pairs, page by page.

    Workers iterate :attr:`current` and, when it is exhausted, call :meth:`refill` with
    the iterator they saw run dry; :meth:`refill` returns ``True`` once a fresh page is
    current (fetched by them or by another worker) and ``False`` at the end of the source.

    :ivar current: the shared iterator over the current page
    :ivar total: the number of items, once known (up front, or at the end of the source)
    :ivar cursor: for a reader, the cursor after the last page read (a checkpoint)
    :ivar exhausted: whether the last page has been read
    """

    __slots__ = (
        "_closer",
        "_fetch",
        "_next_index",
        "_on_total",
        "_refilling",
        "current",
        "cursor",
        "exhausted",
        "total",
    )

    def __init__(
        self,
        fetch: _Fetch | None,
        *,
        first: Iterator[Pair] = _EMPTY,
        total: int | None = None,
        closer: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        self.current = first
        self.total = total
        self.cursor: str | None = None
        self.exhausted = fetch is None
        self._fetch = fetch
        self._refilling: anyio.Event | None = None
        self._next_index = 0 if total is None else total
        self._closer = closer
        self._on_total: Callable[[int], None] | None = None

    def on_total(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(total)`` when the total becomes known (at once if it is)."""
        self._on_total = callback
        if self.total is not None:
            callback(self.total)

    @property
    def read(self) -> int:
        """Items handed to pages so far."""
        return self._next_index

    async def refill(self, seen: Iterator[Pair]) -> bool:
        """Make a fresh page current after ``seen`` ran dry.

        One caller fetches; the others wait for it on one event (woken together, not
        handed a lock one by one). A fetch that completes without suspending (an iterator,
        an in-memory reader) makes the new page current before any other worker runs.

        :param seen: the page iterator the caller found exhausted
        :return: ``True`` when :attr:`current` may hold items, ``False`` at the end
        """
        while True:
            if self.current is not seen:
                return True
            if self.exhausted:
                return False
            pending = self._refilling
            if pending is not None:
                await pending.wait()
                continue
            self._refilling = done = anyio.Event()
            try:
                await self._take_page()
            finally:
                self._refilling = None
                done.set()

    async def _take_page(self) -> None:
        """Fetch the next page and make it current (once at a time, see :meth:`refill`)."""
        assert self._fetch is not None
        page, last = await self._fetch()
        start = self._next_index
        count = len(page)
        self._next_index = start + count
        if count:
            self.current = enumerate(page, start)
        if last:
            self.exhausted = True
            self._set_total(self._next_index)

    async def drain(self) -> list[Pair]:
        """Read every remaining item (for ``batch_fn``, which needs them all)."""
        pairs: list[Pair] = []
        while True:
            page = self.current
            pairs.extend(page)
            if not await self.refill(page):
                return pairs

    async def aclose(self) -> None:
        """Close the underlying iterator (an unfinished async generator, say)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            result = closer()
            if inspect.isawaitable(result):
                await result

    def _set_total(self, total: int) -> None:
        self.total = total
        if self._on_total is not None:
            self._on_total(total)


def _pages_of_iterator(iterator: Iterator[Any], page_size: int) -> _Fetch:
    async def fetch() -> tuple[Collection[Any], bool]:
        page = list(itertools.islice(iterator, page_size))
        return page, len(page) < page_size

    return fetch


def _items_of_async_iterator(iterator: AsyncIterator[Any]) -> _Fetch:
    async def fetch() -> tuple[Collection[Any], bool]:
        try:
            item = await iterator.__anext__()
        except StopAsyncIteration:
            return (), True
        return (item,), False

    return fetch


def _pages_of_reader(reader: ItemReader[Any], page_size: int, feed_ref: list[ItemFeed]) -> _Fetch:
    async def fetch() -> tuple[Collection[Any], bool]:
        feed = feed_ref[0]
        page = await reader.read_page(feed.cursor, page_size)
        feed.cursor = page.cursor
        return page.items, page.cursor is None

    return fetch


def size_of(source: Any) -> int | None:
    """The number of items of a source that is a collection (read whole, its size known
    up front); ``None`` for the others (iterators, async iterables, readers)."""
    if isinstance(source, Collection) and not isinstance(source, Iterator):
        return len(source)
    return None


async def open_feed(source: Any, *, page_size: int) -> ItemFeed:
    """Open a feed over a scatter source.

    :param source: an iterable, an async iterable, an awaitable of either, or an
        :class:`~flowstone.protocols.ItemReader`
    :param page_size: items per page for readers and iterators
    :raises TypeError: the source is none of these
    """
    if inspect.isawaitable(source):
        source = await source
    if isinstance(source, ItemReader) and not isinstance(source, Iterable | AsyncIterable):
        holder: list[ItemFeed] = []
        feed = ItemFeed(_pages_of_reader(source, page_size, holder))
        holder.append(feed)
        feed.total = await source.count()
        return feed
    size = size_of(source)
    if size is not None:
        return ItemFeed(None, first=enumerate(source), total=size)
    if isinstance(source, Iterable):
        iterator = iter(source)
        close = getattr(iterator, "close", None)
        return ItemFeed(_pages_of_iterator(iterator, page_size), closer=close)
    if isinstance(source, AsyncIterable):
        aiterator = aiter(source)
        aclose = getattr(aiterator, "aclose", None)
        return ItemFeed(_items_of_async_iterator(aiterator), closer=aclose)
    raise TypeError(
        "scatter items must be an iterable, an async iterable or an ItemReader, "
        f"not {type(source).__name__}"
    )
