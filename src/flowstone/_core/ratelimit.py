"""Rate limiting: an async token bucket that many tasks, and many runs, can share.

This module owns :class:`RateLimiter`. It limits how often something happens (calls to
an API, queries to a database), not how many happen at once: a token taken is never given
back. Waiters are served in first-come, first-served order, and a waiter that is
cancelled takes no tokens with it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

__all__ = ["RateLimiter"]

_EPSILON = 1e-9
"""Tokens short of a request that still count as enough (float rounding after a sleep)."""


class _Waiter:
    """One task queued in :meth:`RateLimiter.acquire`."""

    __slots__ = ("done", "event")

    def __init__(self, event: anyio.Event | None) -> None:
        self.event = event  # None only for a waiter that was first in line on arrival
        self.done = False  # it got its tokens or gave up; skipped when its turn comes


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be positive and finite, not {value!r}")
    return float(value)


class RateLimiter:
    """An async token bucket: at most ``rate`` acquisitions per ``per`` seconds, on average.

    The bucket holds up to ``burst`` tokens and starts full; it refills continuously at
    ``rate / per`` tokens a second. The default ``burst`` is one period's allowance,
    ``max(1, int(rate))``, so a fresh or idle limiter lets that many through at once and
    then paces the rest at the steady rate; pass ``burst=1`` to space every acquisition
    evenly. Over any stretch of time ``t``, at most ``burst + t * rate / per`` tokens are
    taken.

    The limiter is bound to no event loop, so one instance can serve many runs; it is not
    thread-safe, so use it from one event loop at a time.

    :param rate: tokens per period, positive
    :param per: the period, in seconds, positive
    :param burst: the bucket's capacity, an int of at least 1; see above for the default
    :param clock: returns the time in seconds; monotonic (tests pass a fake clock)
    :param sleep: sleeps for a number of seconds; ``anyio.sleep`` (tests pass one that
        moves their fake clock)
    :raises ValueError: naming the argument that is out of range
    """

    __slots__ = (
        "_burst",
        "_clock",
        "_fill_rate",
        "_per",
        "_rate",
        "_sleep",
        "_tokens",
        "_updated",
        "_waiters",
    )

    def __init__(
        self,
        rate: float,
        per: float = 1.0,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = anyio.sleep,
    ) -> None:
        self._rate = _positive(rate, "rate")
        self._per = _positive(per, "per")
        if burst is None:
            burst = max(1, int(self._rate))
        elif isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int of at least 1, not {burst!r}")
        self._burst = burst
        self._fill_rate = self._rate / self._per
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._waiters: deque[_Waiter] = deque()

    @classmethod
    def per_second(cls, n: float, *, burst: int | None = None) -> RateLimiter:
        """Return a limiter of ``n`` acquisitions a second.

        :param n: acquisitions per second, positive
        :param burst: the bucket's capacity; ``max(1, int(n))`` by default
        :return: the limiter
        :raises ValueError: if an argument is out of range
        """
        return cls(n, 1.0, burst=burst)

    @classmethod
    def per_minute(cls, n: float, *, burst: int | None = None) -> RateLimiter:
        """Return a limiter of ``n`` acquisitions a minute.

        :param n: acquisitions per minute, positive
        :param burst: the bucket's capacity; ``max(1, int(n))`` by default
        :return: the limiter
        :raises ValueError: if an argument is out of range
        """
        return cls(n, 60.0, burst=burst)

    @classmethod
    def per_hour(cls, n: float, *, burst: int | None = None) -> RateLimiter:
        """Return a limiter of ``n`` acquisitions an hour.

        :param n: acquisitions per hour, positive
        :param burst: the bucket's capacity; ``max(1, int(n))`` by default
        :return: the limiter
        :raises ValueError: if an argument is out of range
        """
        return cls(n, 3600.0, burst=burst)

    @property
    def rate(self) -> float:
        """Tokens per period."""
        return self._rate

    @property
    def per(self) -> float:
        """The period, in seconds."""
        return self._per

    @property
    def burst(self) -> int:
        """The bucket's capacity."""
        return self._burst

    @property
    def available(self) -> float:
        """The tokens in the bucket now (some may be promised to a waiter)."""
        self._refill()
        return self._tokens

    @property
    def waiting(self) -> int:
        """The number of tasks waiting in :meth:`acquire`."""
        return sum(not waiter.done for waiter in self._waiters)

    async def acquire(self, tokens: float = 1) -> None:
        """Take ``tokens``, waiting until the bucket holds them and earlier waiters are served.

        Returns without yielding to the event loop when nobody waits and the tokens are
        there. A waiter that is cancelled takes nothing, and the next in line moves up.

        :param tokens: how many tokens to take, positive and at most ``burst``
        :raises ValueError: if ``tokens`` is out of range
        """
        self._check(tokens)
        if not self._waiters and self._take(tokens):
            return
        queue = self._waiters
        waiter = _Waiter(anyio.Event() if queue else None)
        queue.append(waiter)
        try:
            if waiter.event is not None:
                await waiter.event.wait()  # until every earlier waiter is done
            while not self._take(tokens):
                await self._sleep((tokens - self._tokens) / self._fill_rate)
        finally:
            waiter.done = True
            if queue[0] is waiter:
                queue.popleft()
                while queue and queue[0].done:
                    queue.popleft()
                if queue and queue[0].event is not None:
                    queue[0].event.set()

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take ``tokens`` if nobody waits and the bucket holds them now.

        :param tokens: how many tokens to take, positive and at most ``burst``
        :return: whether the tokens were taken
        :raises ValueError: if ``tokens`` is out of range
        """
        self._check(tokens)
        return not self._waiters and self._take(tokens)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, per={self._per:g}, burst={self._burst})"

    def _check(self, tokens: float) -> None:
        if not 0 < tokens <= self._burst:  # also rejects NaN
            raise ValueError(
                f"tokens must be positive and at most burst={self._burst}, not {tokens!r}"
            )

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(float(self._burst), self._tokens + elapsed * self._fill_rate)
            self._updated = now

    def _take(self, tokens: float) -> bool:
        self._refill()
        if self._tokens + _EPSILON < tokens:
            return False
        self._tokens = max(0.0, self._tokens - tokens)
        return True
