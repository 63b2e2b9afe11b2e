"""Attempt deadlines that also reach plain functions running in worker threads.

A worker thread cannot be interrupted, so under a deadline a plain function's thread is
*abandoned* when the deadline passes: the attempt fails at once, while the thread runs on
in the background until the function returns (its result is then discarded). Outside a
deadline, cancelling a call waits for its thread, as anyio does by default, so cancelled
runs never leave work behind.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["call_with_timeout", "run_in_thread"]

T = TypeVar("T")

# True inside call_with_timeout: worker threads started there are abandoned on cancel.
_under_deadline: ContextVar[bool] = ContextVar("flowstone_under_deadline", default=False)


async def run_in_thread(fn: Callable[[], T], *, limiter: anyio.CapacityLimiter | None = None) -> T:
    """Call ``fn`` in a worker thread; under :func:`call_with_timeout`, abandon it on cancel.

    :param fn: the function, with its arguments bound
    :param limiter: the thread limiter (default: anyio's)
    """
    return await anyio.to_thread.run_sync(
        fn, abandon_on_cancel=_under_deadline.get(), limiter=limiter
    )


async def call_with_timeout(
    seconds: float, call: Callable[[], Awaitable[T]], timeout_error: Callable[[], Exception]
) -> T:
    """Await ``call()``, cancelled after ``seconds``; then raise ``timeout_error()``.

    Worker threads started through :func:`run_in_thread` inside ``call`` (in this task or in
    tasks it starts) are abandoned when the deadline passes, so a plain function cannot
    outlast its timeout.

    :param seconds: the time limit
    :param call: the work
    :param timeout_error: builds the error raised when the limit is reached
    """
    token = _under_deadline.set(True)
    try:
        with anyio.move_on_after(seconds):
            return await call()
    finally:
        _under_deadline.reset(token)
    raise timeout_error()
