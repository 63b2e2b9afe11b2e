"""The ready queue a run's assets are scheduled on.

An asset is ready when the last of its scheduled dependencies has finished. Ready assets
are run by a set of worker tasks in one anyio task group rather than by a task each: a
worker runs one ready asset after another, so a chain of assets runs in one task, and an
asset whose function returns without suspending costs no task at all.

Workers are added as they are needed: before a worker runs an asset while more are
queued, it starts helpers, up to one per live worker (so a fan-out of assets that wait on
I/O reaches full concurrency in a logarithmic number of event-loop turns, while one that
never suspends starts few). A worker gives the event loop a turn every
:data:`YIELD_EVERY` assets, so that a run of assets that never suspend does not hold the
loop for long.

Even the first worker is a task of its own, never the caller's task: an asset runs in a
task whose ContextVars the materialize caller never sees (what an asset sets stays with
the run), and ``anyio.get_current_task()``, cancel scopes and timeouts inside an asset
belong to the run's task group. Running a lone ready asset in the caller's task would save
one task per run (about 20 µs), not per asset, and would break the first of these.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["YIELD_EVERY", "AssetRunner", "run_ready_queue"]

#: How many assets a worker runs before it gives the event loop a turn.
YIELD_EVERY = 32


class AssetRunner(Protocol):
    """What the ready queue asks of the run whose assets it schedules."""

    def is_done(self, name: str) -> bool:
        """Whether ``name`` already has its outcome in this run (its dependents may go)."""
        ...

    def claim(self, name: str) -> bool:
        """Mark ``name`` as run by this queue; ``False`` when another part of the run
        (a nested materialization) is running it already."""
        ...

    async def run_asset(self, name: str, release: Callable[[str], None]) -> bool:
        """Run the claimed asset ``name``.

        :param release: called with ``name`` while it still runs, when its dependents may
            start before it ends (its record is being written behind the run)
        :return: whether its dependents may start now (``False`` when it was released)
        """
        ...

    async def await_other(self, name: str) -> None:
        """Wait for ``name``, run by another part of the run, to have its outcome."""
        ...

    def abandon(self, name: str) -> None:
        """Record that the claimed ``name`` never started (the run was cancelled)."""
        ...


async def run_ready_queue(
    closure: Iterable[str],
    scheduled_deps: Callable[[str], Iterable[str]],
    runner: AssetRunner,
) -> None:
    """Run every asset of ``closure`` once its scheduled dependencies in it are done.

    :param scheduled_deps: the dependencies of an asset that order it
    :raises BaseException: what an asset's task raised (not an asset's failure, which is
        an outcome); claimed assets that never started are abandoned first
    """
    names = list(closure)
    members = set(names)
    waiting: dict[str, int] = {}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        count = 0
        for dep in scheduled_deps(name):
            if dep in members:
                count += 1
                children[dep].append(name)
        waiting[name] = count
    queue: deque[str] = deque()
    live = 0  # workers started and not yet ended
    starting = 0  # workers spawned that have not started yet

    try:
        async with anyio.create_task_group() as tg:

            def ready(name: str, done: list[str]) -> None:
                if runner.is_done(name):
                    done.append(name)
                elif runner.claim(name):
                    queue.append(name)
                else:
                    tg.start_soon(wait_for_other, name)

            def finished(name: str) -> None:
                done = [name]
                while done:
                    for child in children[done.pop()]:
                        left = waiting[child] - 1
                        waiting[child] = left
                        if not left:
                            ready(child, done)

            def wake() -> None:
                nonlocal starting
                while queue and starting < len(queue) and starting < max(1, live):
                    starting += 1
                    tg.start_soon(worker)

            def release(name: str) -> None:
                finished(name)
                wake()

            async def wait_for_other(name: str) -> None:
                await runner.await_other(name)
                finished(name)
                wake()

            async def worker() -> None:
                nonlocal live, starting
                starting -= 1
                live += 1
                try:
                    ran = 0
                    while queue:
                        name = queue.popleft()
                        if queue:
                            wake()
                        if await runner.run_asset(name, release):
                            finished(name)
                        ran += 1
                        if ran % YIELD_EVERY == 0:
                            await anyio.lowlevel.checkpoint()
                finally:
                    live -= 1

            done: list[str] = []
            for name in names:
                if not waiting[name]:
                    ready(name, done)
            for name in done:
                finished(name)
            wake()
    except BaseException:
        while queue:
            runner.abandon(queue.popleft())
        raise
