"""Time as a run sees it: the :class:`Clock` protocol, the real clock and a virtual one.

Every deadline in flowstone (a gate's timeout, say) reads the runtime's clock
(``Runtime(clock=...)``) rather than the system's, so a test can put a
:class:`VirtualClock` in its place and jump days ahead in no real time.
Deadlines are absolute, timezone-aware UTC datetimes, which a store can keep and a new
process can arm again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "SystemClock", "VirtualClock"]

#: How many plain yields :func:`_settle` tries before it falls back to anyio's wait.
_SETTLE_SPINS = 1000


def _all_blocked(this: asyncio.Task[object] | None) -> bool:
    if getattr(asyncio.get_running_loop(), "_ready", None):  # callbacks waiting to run
        return False
    for task in asyncio.all_tasks():
        if task is this:
            continue
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return False
    return True


async def _settle() -> None:
    """Wait until every other task is blocked (``anyio.wait_all_tasks_blocked``).

    On asyncio, anyio's version sleeps 0.1 s of real time whenever a task is still
    runnable, which a task just woken always is: a test that wakes thousands of
    sleepers (a month of hourly ticks) would wait minutes. Here plain yields are tried
    first; the real wait is the fallback (and the way on other event loops).
    """
    try:
        this = asyncio.current_task()
    except RuntimeError:  # not on asyncio
        this = None
    if this is not None:
        for _ in range(_SETTLE_SPINS):
            await anyio.lowlevel.checkpoint()
            if _all_blocked(this):
                return
    await anyio.wait_all_tasks_blocked()


@runtime_checkable
class Clock(Protocol):
    """Where a runtime reads the time and waits for deadlines.

    Contract: ``now()`` is timezone-aware UTC and never goes backwards; ``sleep_until``
    returns once ``now()`` has reached ``deadline`` (at once for a deadline in the past),
    and is cancellable.
    """

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, deadline: datetime) -> None:
        """Wait until ``now()`` reaches ``deadline``."""
        ...


class SystemClock:
    """The real clock: the system's time and the event loop's timers (the default)."""

    def now(self) -> datetime:
        """The system's current time, UTC."""
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        """Sleep on the event loop until the system's time reaches ``deadline``."""
        while True:
            left = (deadline - self.now()).total_seconds()
            if left <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(left)

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """A clock that moves only when told: ``await clock.advance(days=7)``.

    Sleepers wait on the virtual time; :meth:`advance` wakes those that fall due, one
    deadline after another in order (the time reads each one's deadline as it wakes), and
    lets every woken task run until it blocks again before it moves on, so work a wake-up
    schedules within the advanced span (a retry, a second deadline) happens too. It never
    sleeps for real. Use it on one event loop.

    :param start: the virtual time to start at (default: the system's time now, UTC)
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("VirtualClock(start=...) must be timezone-aware")
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, anyio.Event]] = []
        self._order = itertools.count()
        self._changed: anyio.Event | None = None

    def now(self) -> datetime:
        """The virtual time."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks wait on this clock."""
        return len(self._sleepers)  # (a sleeper leaves the heap before it is woken)

    async def sleep_until(self, deadline: datetime) -> None:
        """Wait until the virtual time reaches ``deadline`` (through :meth:`advance`)."""
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._order), event)
        heapq.heappush(self._sleepers, entry)
        self._notify()
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: forget it
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Wait until at least ``count`` tasks sleep on this clock (a test's way of knowing
        that the code under test reached its wait, without sleeping)."""
        while self.sleepers < count:
            changed = self._changed = anyio.Event()
            await changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def advance(
        self,
        seconds: float = 0,
        *,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> None:
        """Move the time forward, waking every sleeper that falls due, in deadline order.

        :raises ValueError: the total is negative
        """
        step = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        if step < timedelta(0):
            raise ValueError(f"a clock only moves forward; got {step}")
        target = self._now + step
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            event.set()
            await _settle()
        self._now = target
        await _settle()

    def __repr__(self) -> str:
        return f"VirtualClock({self._now.isoformat()}, sleepers={self.sleepers})"
