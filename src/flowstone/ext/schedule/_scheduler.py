"""The :class:`Scheduler`: schedules and sensors firing runs in the current event loop.

One task per schedule (and per sensor) runs in the scheduler's task group, with the runs
it fires and a sweeper that takes over claims whose lease ended. Every wait is on the
runtime's clock (``Runtime(clock=...)``), so a test drives a scheduler with
``flowstone.testing.VirtualClock`` through months of ticks in no real time. After every
wake-up a schedule recomputes what is due from the clock, not from how long it slept.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

import anyio

import flowstone as fs

from ._errors import ScheduleDefinitionError, UnknownScheduleError
from ._firing import Entry, Firing, schedule_tagger
from ._loops import Loops
from ._sensors import Sensor
from ._spec import Schedule
from ._store import schedule_store_for
from ._types import ScheduleStatus

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from anyio.abc import TaskGroup

    from ._store import ScheduleStore

__all__ = ["Scheduler"]

_log = logging.getLogger("flowstone.schedule")


class Scheduler(Loops):
    """Fires schedules and polls sensors in the background of the current event loop.

    ::

        async with Scheduler(runtime, [nightly, new_files_sensor]) as scheduler:
            ...                     # fires in the background
        # or: await scheduler.run()

    Each tick is claimed in the schedule store before it fires (the materialization
    store's own with ``PostgresStore``, so any number of processes running the same
    schedules fire each tick once in total; in memory otherwise), under a lease renewed
    while its run goes on: a claim whose holder died is taken over and its run (same id)
    resumed. A failed run, or a sensor that raises, never stops the scheduler.

    :param runtime: where runs materialize; its clock drives every wait
    :param targets: :class:`Schedule` and :class:`Sensor` objects (names unique)
    :param store: the schedule store (default: see :func:`schedule_store_for`)
    :param pipeline: the pipeline of sensors that name none
    :param owner: this scheduler's name in claims (default: host and process id)
    :param lease: seconds a claim holds without renewal (renewed every third of it)
    :param grace: how late a tick may be seen and still count as on time (not catch-up)
    :param max_backoff: the longest wait, in seconds, before a failing sensor is polled again
    :param sweep: how often the claims of other schedulers are looked at for a lease that
        ended (a claim seen is also looked at again when its lease ends)
    :raises ScheduleDefinitionError: duplicate names, a sensor with no pipeline, or a
        bad setting
    """

    def __init__(
        self,
        runtime: fs.Runtime,
        targets: Iterable[Schedule | Sensor] = (),
        *,
        store: ScheduleStore | None = None,
        pipeline: Any = None,
        owner: str | None = None,
        lease: float = 60.0,
        grace: timedelta = timedelta(seconds=60),
        max_backoff: float = 300.0,
        sweep: timedelta = timedelta(minutes=10),
    ) -> None:
        if not isinstance(runtime, fs.Runtime):
            raise ScheduleDefinitionError(f"Scheduler needs a flowstone Runtime, not {runtime!r}")
        if lease <= 0 or max_backoff <= 0:
            raise ScheduleDefinitionError("Scheduler: lease= and max_backoff= must be > 0")
        if not isinstance(grace, timedelta) or grace < timedelta(0):
            raise ScheduleDefinitionError(
                f"Scheduler: grace= must be a timedelta >= 0, not {grace!r}"
            )
        self.runtime = runtime
        self.store: ScheduleStore = store if store is not None else schedule_store_for(runtime)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.grace = grace
        self.sweep = sweep
        self.max_backoff = max_backoff
        self._default_pipeline = None if pipeline is None else _as_pipeline(pipeline)
        self._firing = Firing(runtime, self.store, self.owner, lease, self._step)
        self._progress = anyio.Event()
        self._sweeper_asleep = False
        self._entries: dict[str, Entry] = {}
        self._tg: TaskGroup | None = None
        self._outer: TaskGroup | None = None
        self._stop = anyio.Event()
        self._started = anyio.Event()
        for target in targets:
            self._entries[target.name] = self._entry(target)

    def __repr__(self) -> str:
        return f"Scheduler({sorted(self._entries)}, owner={self.owner!r})"

    @property
    def names(self) -> list[str]:
        """The names of its schedules and sensors."""
        return list(self._entries)

    @property
    def fired(self) -> int:
        """How many runs this scheduler started."""
        return self._firing.started

    def _entry(self, target: Schedule | Sensor) -> Entry:
        if isinstance(target, Schedule):
            return self._checked(Entry(target, "schedule", target.pipeline))
        if not isinstance(target, Sensor):
            raise ScheduleDefinitionError(f"{target!r} is neither a Schedule nor a Sensor")
        pipeline = target.pipeline or self._default_pipeline
        if pipeline is None:
            raise ScheduleDefinitionError(
                f"sensor {target.name!r} has no pipeline: give it pipeline=, or the "
                "Scheduler pipeline="
            )
        return self._checked(Entry(target, "sensor", pipeline))

    def _checked(self, entry: Entry) -> Entry:
        if entry.name in self._entries:
            raise ScheduleDefinitionError(f"two schedules or sensors are named {entry.name!r}")
        return entry

    def _get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownScheduleError(name) from None

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        outer = anyio.create_task_group()
        await outer.__aenter__()
        self._outer = outer
        outer.start_soon(self.run)
        await self._started.wait()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.stop()
        outer, self._outer = self._outer, None
        assert outer is not None
        return await outer.__aexit__(exc_type, exc, tb)

    def stop(self) -> None:
        """Stop :meth:`run`: schedules, sensors and runs in flight are cancelled (their
        claims are taken over once their lease ends, and their runs resumed)."""
        self._stop.set()

    async def run(self) -> None:
        """Fire and poll until :meth:`stop` is called (or the task is cancelled)."""
        if self._tg is not None:
            raise fs.RuntimeStateError("this Scheduler is running already")
        self._stop = anyio.Event()
        tagger = schedule_tagger(self.runtime)
        tagger.listeners.append(self._on_asset)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for entry in self._entries.values():
                    self._start(entry)
                tg.start_soon(self._sweep)
                self._started.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._started = anyio.Event()
            tagger.listeners.remove(self._on_asset)

    def _start(self, entry: Entry) -> None:
        assert self._tg is not None
        entry.scope = anyio.CancelScope()
        loop = self._schedule_loop if entry.kind == "schedule" else self._sensor_loop
        self._tg.start_soon(self._guarded, entry, loop)

    async def _guarded(self, entry: Entry, loop: Any) -> None:
        assert entry.scope is not None
        with entry.scope:
            await loop(entry)

    def add(self, target: Schedule | Sensor) -> None:
        """Add a schedule or sensor; it starts at once when the scheduler runs.

        :raises ScheduleDefinitionError: its name is taken, or it cannot work
        """
        entry = self._entry(target)
        self._entries[entry.name] = entry
        if self._tg is not None:
            self._start(entry)

    def remove(self, name: str) -> None:
        """Remove a schedule or sensor: it fires no more (a run in flight goes on).

        :raises UnknownScheduleError: no such name
        """
        entry = self._get(name)
        del self._entries[name]
        if entry.scope is not None:
            entry.scope.cancel()
        self._step()

    def pause(self, name: str) -> None:
        """Pause a schedule (its ticks are recorded as skipped, ``paused``) or a sensor
        (not polled), in this scheduler.

        :raises UnknownScheduleError: no such name
        """
        entry = self._get(name)
        entry.paused = True
        entry.notify()

    def resume(self, name: str) -> None:
        """Resume a paused schedule (from its next tick: paused ticks are not caught up)
        or sensor.

        :raises UnknownScheduleError: no such name
        """
        entry = self._get(name)
        entry.paused = False
        entry.notify()

    async def trigger(self, name: str) -> str | None:
        """Fire a schedule now (its tick is the current instant), or poll a sensor now.

        The run starts in the background while the scheduler runs, and is awaited here
        when it does not. Overlap policies do not apply to a trigger.

        :return: the schedule's run id (``None`` for a sensor, or when another scheduler
            claimed the same instant)
        :raises UnknownScheduleError: no such name
        """
        entry = self._get(name)
        if entry.kind == "sensor":
            if self._tg is None:
                await self.store.register(name, self.runtime.clock.now())
                await self._poll(entry, await self.store.cursor(name))
            else:
                entry.notify()
            return None
        now = self.runtime.clock.now()
        await self.store.register(name, now)
        record = self._record(entry, now, trigger=True)
        if not await self.store.claim(record):
            return None
        entry.running += 1
        if self._tg is None:
            await self._firing.execute(entry, record)
        else:
            self._tg.start_soon(self._firing.execute, entry, record)
        return record.run_id

    async def status(self) -> list[ScheduleStatus]:
        """Each schedule and sensor: paused, next tick, last tick and its run's status."""
        found = []
        for entry in list(self._entries.values()):
            last = await self.store.history(entry.name, limit=1)
            now = self.runtime.clock.now()
            next_tick = entry.next_tick
            if next_tick is None and isinstance(entry.target, Schedule):
                next_tick = entry.target.ticks.next_after(now)
            found.append(
                ScheduleStatus(
                    name=entry.name,
                    kind=entry.kind,
                    paused=entry.paused,
                    next_tick=next_tick,
                    last_tick=last[0].tick if last else None,
                    last_status=last[0].status if last else None,
                    last_run_id=last[0].run_id if last else None,
                    skipped=entry.skipped,
                )
            )
        return found

    async def wait_idle(self) -> None:
        """Wait until every schedule and sensor waits for its next tick (or poll) and no
        run of theirs is in flight: how a test on a virtual clock knows that what fell due
        (with store I/O, say on PostgreSQL) is done before it advances the clock again.

        :raises RuntimeStateError: the scheduler is not running
        """
        while not self._idle():
            if self._tg is None:
                raise fs.RuntimeStateError("the Scheduler is not running")
            await self._progress.wait()


def _as_pipeline(pipeline: Any) -> fs.Pipeline:
    from ._spec import pipeline_of

    return pipeline_of(pipeline)
