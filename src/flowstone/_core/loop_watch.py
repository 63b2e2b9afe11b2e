"""Warn when an asset holds the event loop: a blocking call (``time.sleep``, a synchronous
client) inside an ``async def`` stalls every other asset of every run on that loop.

How it stays cheap: nothing runs per step of an asset. While a runtime materializes, one
daemon thread for the whole process (started on first use, idle while nothing runs)
posts a no-op callback to each loop it watches every half ``threshold`` and waits for it.
A loop that does not run it within the threshold is held by one step of something; the
thread then looks at that loop thread's stack (``sys._current_frames``) twice, half a
threshold apart, and when the same asset function's frame is executing both times it logs
one warning naming the asset (once per asset and runtime). A run costs one registration:
a list append and removal.

The threshold is ``Runtime(loop_block_warning=...)`` in seconds, :data:`DEFAULT_THRESHOLD`
by default; ``None`` turns the warning off.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterator
    from types import CodeType, FrameType

    from .pipeline import Pipeline

__all__ = ["DEFAULT_THRESHOLD", "LoopWatch", "loop_watch"]

#: Seconds an asset may hold the event loop before it is warned about.
DEFAULT_THRESHOLD = 0.5

_logger = logging.getLogger("flowstone")


@dataclass(eq=False, slots=True)
class _Watched:
    """One run being materialized: its loop, pipeline and threshold."""

    loop: asyncio.AbstractEventLoop
    thread_id: int
    pipeline: Pipeline
    threshold: float
    warned: set[str]


@dataclass(eq=False, slots=True)
class _Probe:
    """A no-op callback posted to one loop, and whether the loop has run it."""

    loop: asyncio.AbstractEventLoop
    thread_id: int
    ran: threading.Event = field(default_factory=threading.Event)


class LoopWatch:
    """The process's watcher of event loops that materialize (see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[_Watched] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

    def start(self, owner: object, pipeline: Pipeline, threshold: float) -> _Watched | None:
        """Watch the running loop while ``pipeline`` is materialized by ``owner``.

        :return: the registration to pass to :meth:`stop`, or ``None`` outside asyncio
        """
        # Not imported here (it is slow to import): without it, no asyncio loop is running.
        asyncio = sys.modules.get("asyncio")
        if asyncio is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop library: not watched
            return None
        warned = self._warned.get(owner)
        if warned is None:
            warned = self._warned.setdefault(owner, set())
        watched = _Watched(loop, threading.get_ident(), pipeline, threshold, warned)
        self._watched.append(watched)  # atomic; the watcher copies the list
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="flowstone-loop-watch", daemon=True
                    )
                    self._thread.start()
        if not self._wake.is_set():
            self._wake.set()
        return watched

    def stop(self, watched: _Watched | None) -> None:
        """End one registration made by :meth:`start`."""
        if watched is not None:
            self._watched.remove(watched)

    def _forget(self) -> None:
        """In a forked child: the parent's thread and runs are not there."""
        self._lock = threading.Lock()
        self._watched = []
        self._wake = threading.Event()
        self._thread = None

    def _snapshot(self) -> list[_Watched]:
        return list(self._watched)

    def _run(self) -> None:
        while True:
            watched = self._snapshot()
            if not watched:
                self._wake.clear()
                if not self._snapshot():
                    self._wake.wait()
                continue
            half = min(w.threshold for w in watched) / 2
            time.sleep(half)
            watched = self._snapshot()  # the runs in progress now
            if watched:
                self._probe(watched, half)

    def _probe(self, watched: list[_Watched], half: float) -> None:
        """Post a callback to each watched loop; look at the ones that do not run it."""
        probes: dict[int, _Probe] = {}
        posted = time.monotonic()
        for each in watched:
            if id(each.loop) not in probes and not each.loop.is_closed():
                probe = probes[id(each.loop)] = _Probe(each.loop, each.thread_id)
                try:
                    each.loop.call_soon_threadsafe(probe.ran.set)
                except RuntimeError:  # closed meanwhile
                    probe.ran.set()
        held = [p for p in probes.values() if not p.ran.wait(half)]
        if not held:
            return
        first = {id(p.loop): _asset_frame(p.thread_id, watched, p.loop) for p in held}
        time.sleep(half)
        for probe in held:
            if probe.ran.is_set():
                continue
            seen = first[id(probe.loop)]
            now = _asset_frame(probe.thread_id, watched, probe.loop)
            if seen is None or now is None or seen[0] is not now[0]:
                continue
            name, each = now[1], now[2]
            if name in each.warned or time.monotonic() - posted < each.threshold:
                continue
            each.warned.add(name)
            _logger.warning(
                "asset %r has held the event loop for more than %.2gs: a blocking call in an "
                "async def stalls every other asset on the loop; make it a plain def (it runs "
                "in a worker thread) or await the blocking part with anyio.to_thread.run_sync "
                "(this is said once per asset; Runtime(loop_block_warning=...) sets the "
                "threshold, None turns it off)",
                name,
                each.threshold,
            )


def _frames(thread_id: int) -> Iterator[FrameType]:
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        yield frame
        frame = frame.f_back


def _asset_frame(
    thread_id: int, watched: list[_Watched], loop: asyncio.AbstractEventLoop
) -> tuple[FrameType, str, _Watched] | None:
    """The innermost frame of an asset function executing on the loop's thread, if any."""
    codes: dict[CodeType, tuple[str, _Watched]] = {}
    for each in watched:
        if each.loop is loop:
            for asset_def in each.pipeline:
                code = getattr(asset_def.fn, "__code__", None)
                if code is not None:
                    codes.setdefault(code, (asset_def.name, each))
    for frame in _frames(thread_id):
        found = codes.get(frame.f_code)
        if found is not None:
            return frame, found[0], found[1]
    return None


#: The process's one watcher.
loop_watch = LoopWatch()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=loop_watch._forget)
