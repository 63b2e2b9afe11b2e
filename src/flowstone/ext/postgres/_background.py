"""Work a store does behind its callers, in one task group per event loop.

:class:`BackgroundWork` runs each piece of work (a record write behind the run, a delayed
flush) as a task of one anyio task group. The group lives in a task of its own, started
with the first piece of work in an event loop and ended once no work is left, so that it
is entered and exited in one task whichever tasks open, use and close the store, and an
idle store holds no task. :meth:`~BackgroundWork.aclose` waits for the work still running
(the store's ``aclose`` writes what is pending after it). A failure in one piece of work is
logged and ends neither the others nor the caller that started it: the work reports its
outcome to its own waiters (futures of the write buffer).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import anyio

from ._errors import describe

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

__all__ = ["BackgroundWork"]

_log = logging.getLogger("flowstone.postgres")


class BackgroundWork:
    """One task group for a store's background work (see the module documentation).

    :param what: what the work is, for log messages
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group: TaskGroup | None = None
        self._owner: asyncio.Task[None] | None = None
        self._waiting: list[Callable[[], Awaitable[None]]] = []
        self._running = 0
        self._idle: anyio.Event | None = None

    @property
    def running(self) -> int:
        """Pieces of work started and not finished (in this event loop)."""
        return self._running if self._loop is _current_loop() else 0

    def start_soon(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work()`` in the background of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.forget()  # work of an event loop that ended cannot be waited for
            self._loop = loop
        self._running += 1
        group = self._group
        if group is not None:
            group.start_soon(self._run, work)
            return
        self._waiting.append(work)
        if self._owner is None:
            self._owner = loop.create_task(self._own_group(), name=f"flowstone: {self._what}")

    async def aclose(self) -> None:
        """Wait for the work still running in this event loop to finish."""
        while (owner := self._owner) is not None and self._loop is asyncio.get_running_loop():
            await asyncio.wait([owner])

    def forget(self) -> None:
        """Drop the work of another event loop (it cannot run on: its loop is gone)."""
        self._loop = None
        self._group = None
        self._owner = None
        self._waiting = []
        self._running = 0
        self._idle = None

    async def _own_group(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                while True:
                    waiting, self._waiting = self._waiting, []
                    for work in waiting:
                        group.start_soon(self._run, work)
                    if not self._running:
                        break
                    idle = self._idle = anyio.Event()
                    await idle.wait()
                # From here work waits for the next owner: the group is closing.
                self._group = None
        finally:
            me = asyncio.current_task()
            if self._owner is me:
                self._group = None
                self._idle = None
                self._owner = None
                if self._waiting and me is not None and not me.cancelling():
                    self._owner = asyncio.get_running_loop().create_task(
                        self._own_group(), name=f"flowstone: {self._what}"
                    )

    async def _run(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception as exc:
            _log.warning("%s failed in the background: %s", self._what, describe(exc))
        finally:
            self._running -= 1
            if not self._running and self._idle is not None:
                self._idle.set()


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
