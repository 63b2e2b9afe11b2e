"""Gathering results in source order: the default list and the bounded stream for ``gather=``.

Items finish in any order. The default gather keeps every successful result and returns
them as a list in source order. A ``gather=`` function instead receives an
:class:`OrderedStream`, an async iterator of ``(key, result)`` in source order (failed items
left out), and memory stays bounded: results wait in a reorder buffer only until the ones
before them are in, and a worker does not *start* an item more than ``window`` positions
past the oldest result the gather function has not consumed. So at most ``window`` results
are buffered (the scatter sizes it at ``4 * max_concurrent * batch size + 64``), whatever
the item count; one slow item holds back at most that many finished ones behind it. (An
in-memory source batched with ``group_by`` or ``batch_fn`` dispatches batches out of source
order, so there the buffer is bounded by the source, which is in memory anyway.)

If the gather function returns before consuming every result, the remaining items still
run (each item runs exactly once), and their results are dropped.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

__all__ = ["OrderedStream", "SlotResults", "call_gather", "window_for"]

_SKIP: Any = object()
_NONE: Any = object()
_MAX = sys.maxsize


def window_for(max_concurrent: int, unit_size: int = 1) -> int:
    """The reorder window (most results buffered) for a scatter of this concurrency."""
    return 4 * max_concurrent * unit_size + 64


class SlotResults:
    """The default gather's store: successful results by source position.

    With a known total the results go into preallocated slots; otherwise into
    ``(index, result)`` pairs sorted once at the end.
    """

    __slots__ = ("pairs", "slots")

    def __init__(self, total: int | None) -> None:
        self.slots: list[Any] | None = [_SKIP] * total if total is not None else None
        self.pairs: list[tuple[int, Any]] = []

    def put(self, index: int, value: Any) -> None:
        """Keep ``value`` as the result at ``index``."""
        if self.slots is not None:
            self.slots[index] = value
        else:
            self.pairs.append((index, value))

    def result(self) -> list[Any]:
        """The kept results in source order."""
        if self.slots is not None:
            return [value for value in self.slots if value is not _SKIP]
        self.pairs.sort(key=_first)
        return [value for _, value in self.pairs]


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]


class OrderedStream(AsyncIterator[tuple[str, Any]]):
    """A bounded reorder buffer: workers put results in any order, the gather function
    iterates them in source order.

    Workers call :meth:`wait_for_room` before starting item ``index`` (it returns at once
    while ``index < limit``), then :meth:`put` or :meth:`skip` when it ends; the scatter
    calls :meth:`close` with the number of items once the source is exhausted and every
    item has ended.

    :param window: the most results held at once
    """

    __slots__ = (
        "_abandoned",
        "_buffer",
        "_end",
        "_next",
        "_space",
        "_wake_next",
        "_wakeup",
        "_window",
        "limit",
    )

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self._window = window
        self._buffer: dict[int, Any] = {}
        self._next = 0
        #: An item may start while its index is below this.
        self.limit = window
        self._end: int | None = None
        self._wakeup: anyio.Event | None = None
        self._space: anyio.Event | None = None
        self._wake_next = _MAX
        self._abandoned = False

    @property
    def buffered(self) -> int:
        """Results waiting for earlier ones (or for the gather function)."""
        return len(self._buffer)

    def put(self, index: int, key: str, value: Any) -> None:
        """The item at ``index`` succeeded with ``value``."""
        if self._abandoned:
            return
        self._buffer[index] = (key, value)
        if index == self._next and self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def skip(self, index: int) -> None:
        """The item at ``index`` failed: it has no result."""
        if self._abandoned:
            return
        self._buffer[index] = _SKIP
        if index == self._next and self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def close(self, end: int) -> None:
        """No more results: the source had ``end`` items."""
        self._end = end
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    def abandon(self) -> None:
        """The gather function is done: drop results and stop holding workers back."""
        self._abandoned = True
        self._buffer.clear()
        self.limit = _MAX
        self._wake_space()

    async def wait_for_room(self, index: int) -> None:
        """Wait until item ``index`` may start (at most ``window`` past the oldest result)."""
        while index >= self.limit:
            # Woken once half the window is free, not at every consumed result: the
            # worker then runs a run of items instead of one per wake-up.
            self._wake_next = min(self._wake_next, index - self._window // 2 + 1)
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()

    def _wake_space(self) -> None:
        self._wake_next = _MAX
        if self._space is not None:
            self._space.set()
            self._space = None

    def __aiter__(self) -> OrderedStream:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        buffer = self._buffer
        while True:
            index = self._next
            entry = buffer.pop(index, _NONE)
            if entry is not _NONE:
                index += 1
                self._next = index
                self.limit = index + self._window
                if index >= self._wake_next:
                    self._wake_space()
                if entry is _SKIP:
                    continue
                return entry  # type: ignore[no-any-return]  # (key, value) as put
            if self._end is not None and index >= self._end:
                raise StopAsyncIteration
            self._wakeup = event = anyio.Event()
            await event.wait()


async def call_gather(gather: Any, results: AsyncIterator[tuple[str, Any]]) -> Any:
    """Call a ``gather=`` function with the results and await its value if needed."""
    value = gather(results)
    if inspect.isawaitable(value):
        value = await value
    return value
