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
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import anyio

import flowstone as fs

from ._errors import ScheduleDefinitionError, UnknownScheduleError
from ._events import SensorFailed, SensorPolled, TickSkipped
from ._firing import Entry, Firing, schedule_tagger
from ._sensors import RuntimeAware, Sensor
from ._spec import Schedule
from ._store import schedule_store_for
from ._types import ScheduleStatus, TickRecord, TickStatus, tick_key

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from anyio.abc import TaskGroup

    from flowstone.events import AssetSucceeded

    from ._store import ScheduleStore

__all__ = ["Scheduler"]

_log = logging.getLogger("flowstone.schedule")


class Scheduler:
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

    def _idle(self) -> bool:
        return (
            self._tg is not None
            and self._sweeper_asleep
            and all(e.sleeping and not e.running and not e.buffered for e in self._entries.values())
        )

    def _step(self) -> None:
        progress, self._progress = self._progress, anyio.Event()
        progress.set()

    async def _sleep(self, entry: Entry, wait: Any) -> None:
        entry.sleeping = True
        self._step()
        try:
            await wait
        finally:
            entry.sleeping = False

    # -- waiting -------------------------------------------------------------------------

    async def _wait(self, entry: Entry, deadline: datetime | None) -> None:
        """Until ``deadline`` on the clock, or a change of ``entry`` (pause, resume, wake)."""
        changed = entry.changed
        if deadline is None:
            await changed.wait()
            return
        clock = self.runtime.clock
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def sleep() -> None:
                    await clock.sleep_until(deadline)
                    scope.cancel()

                tg.start_soon(sleep)
                await changed.wait()
                scope.cancel()

    async def _backoff(self, entry: Entry, failures: int, interval: float) -> float:
        delay = float(min(interval * 2 ** (failures - 1), self.max_backoff))
        entry.next_tick = self.runtime.clock.now() + timedelta(seconds=delay)
        await self.runtime.clock.sleep_until(entry.next_tick)
        return delay

    # -- schedules -----------------------------------------------------------------------

    def _record(self, entry: Entry, tick: datetime, *, trigger: bool = False) -> TickRecord:
        schedule: Schedule = entry.target
        key = tick_key(tick)
        tags = {"schedule": schedule.name, "tick": tick.isoformat()}
        if trigger:
            tags["trigger"] = "manual"
        partition, reason = None, None
        try:
            partition = schedule.partition_for(tick)
        except Exception as exc:
            _log.exception("%s: partition= failed on tick %s", schedule.name, tick)
            reason = f"partition= raised {type(exc).__name__}: {exc}"
        return TickRecord(
            name=schedule.name,
            key=key,
            tick=tick,
            run_id=f"{schedule.name}:{key}",
            status=TickStatus.CLAIMED,
            select=schedule.select,
            partition=partition,
            tags=tags,
            reason=reason,
            owner=self.owner,
            lease_until=self._firing.lease_until(),
        )

    async def _schedule_loop(self, entry: Entry) -> None:
        schedule: Schedule = entry.target
        clock = self.runtime.clock
        cursor: datetime | None = None
        failures = 0
        while True:
            try:
                if cursor is None:
                    registered = await self.store.register(schedule.name, clock.now())
                    last = await self.store.history(schedule.name, limit=1)
                    cursor = max(registered, last[0].tick) if last else registered
                now = clock.now()
                due = list(schedule.ticks.between(cursor, now))
                if due:
                    await self._due(entry, due, now)
                    cursor = due[-1]
                failures = 0
            except Exception:
                failures += 1
                _log.exception("%s: the schedule failed; retrying", schedule.name)
                await self._sleep(entry, self._backoff(entry, failures, 1.0))
                continue
            entry.next_tick = schedule.ticks.next_after(cursor)
            await self._sleep(entry, clock.sleep_until(entry.next_tick))

    async def _due(self, entry: Entry, due: list[datetime], now: datetime) -> None:
        schedule: Schedule = entry.target
        window = max(schedule.catchup or timedelta(0), self.grace)
        old = [tick for tick in due if now - tick > window]
        if old:
            await self._skip(entry, old, "too_old")
        fresh = due[len(old) :]
        if entry.paused and fresh:
            await self._skip(entry, fresh, "paused")
            return
        for tick in fresh:
            await self._tick(entry, tick, late=now - tick > self.grace)

    async def _skip(self, entry: Entry, ticks: list[datetime], reason: str) -> None:
        records = [
            self._record(entry, tick).replace(
                status=TickStatus.SKIPPED,
                reason=reason,
                lease_until=None,
                finished_at=self.runtime.clock.now(),
            )
            for tick in ticks
        ]
        added = await self.store.skip(records)
        if added:
            entry.skipped += added
            self.runtime.emit(
                TickSkipped(
                    run_id=records[-1].run_id,
                    name=entry.name,
                    tick=ticks[-1],
                    reason=reason,
                    count=added,
                )
            )

    async def _tick(self, entry: Entry, tick: datetime, *, late: bool) -> None:
        schedule: Schedule = entry.target
        record = self._record(entry, tick)
        buffered = False
        if schedule.overlap != "allow":
            busy = entry.running > 0 or await self._firing.others_active(entry, record)
            if busy and (schedule.overlap == "skip" or entry.buffered):
                await self._skip(entry, [tick], "overlap")
                return
            buffered = busy
        if not await self.store.claim(record):
            return  # another scheduler has it
        if buffered:
            entry.buffered = True
        else:
            entry.running += 1
        if late:  # catch-up: the missed ticks run one after another, in tick order
            await self._firing.execute(entry, record, buffered=buffered)
        else:
            assert self._tg is not None
            self._tg.start_soon(self._run_claimed, entry, record, buffered)

    async def _run_claimed(self, entry: Entry, record: TickRecord, buffered: bool) -> None:
        await self._firing.execute(entry, record, buffered=buffered)

    async def _sweep(self) -> None:
        """Take over the claims whose lease ended (their holder died) and fire them."""
        clock = self.runtime.clock
        while True:
            wake = clock.now() + self.sweep
            try:
                earliest = await self.store.earliest_lease(list(self._entries), self.owner)
            except Exception:
                _log.exception("could not read the tick claims")
                earliest = None
            if earliest is not None:
                wake = min(wake, earliest + timedelta(microseconds=1))
            self._sweeper_asleep = True
            self._step()
            try:
                await clock.sleep_until(wake)
            finally:
                self._sweeper_asleep = False
            try:
                taken = await self.store.reclaim(
                    list(self._entries), self.owner, clock.now(), self._firing.lease_until()
                )
            except Exception:
                _log.exception("could not take over expired tick claims")
                continue
            for record in taken:
                entry = self._entries.get(record.name)
                if entry is None:
                    continue
                _log.warning("%s: taking over tick %s (its claim expired)", entry.name, record.key)
                entry.running += 1
                assert self._tg is not None
                self._tg.start_soon(self._run_claimed, entry, record, False)

    # -- sensors -------------------------------------------------------------------------

    def _on_asset(self, event: AssetSucceeded) -> None:
        from ._sensors import AssetSensor

        for entry in self._entries.values():
            if isinstance(entry.target, AssetSensor) and entry.target.asset == event.asset:
                entry.notify()

    async def _sensor_loop(self, entry: Entry) -> None:
        sensor: Sensor = entry.target
        if isinstance(sensor, RuntimeAware):
            sensor.attach(self.runtime)
        clock = self.runtime.clock
        failures = 0
        registered = False
        while True:
            if entry.paused:
                entry.next_tick = None
                await self._sleep(entry, self._wait(entry, None))
                continue
            try:
                if not registered:
                    await self.store.register(sensor.name, clock.now())
                    registered = True
                cursor = await self.store.cursor(sensor.name)
                await self._poll(entry, cursor)
            except Exception as exc:
                failures += 1
                delay = float(min(sensor.interval * 2 ** (failures - 1), self.max_backoff))
                _log.exception("sensor %s failed (%d in a row)", sensor.name, failures)
                self.runtime.emit(
                    SensorFailed(
                        run_id="",
                        name=sensor.name,
                        error=f"{type(exc).__name__}: {exc}",
                        failures=failures,
                        retry_in=delay,
                    )
                )
                await self._sleep(entry, self._backoff(entry, failures, sensor.interval))
                continue
            failures = 0
            entry.next_tick = clock.now() + timedelta(seconds=sensor.interval)
            await self._sleep(entry, self._wait(entry, entry.next_tick))

    async def _poll(self, entry: Entry, cursor: str | None) -> None:
        sensor: Sensor = entry.target
        result = await sensor.poll(cursor)
        now = self.runtime.clock.now()
        records: dict[str, TickRecord] = {}
        for index, request in enumerate(result.run_requests):
            key = request.run_key or f"{tick_key(now)}-{index}"
            records.setdefault(
                key,
                TickRecord(
                    name=sensor.name,
                    key=key,
                    tick=now,
                    run_id=f"{sensor.name}:{key}",
                    status=TickStatus.CLAIMED,
                    select=request.selection(),
                    partition=request.partition,
                    tags={**request.tags, "sensor": sensor.name, "run_key": key},
                    owner=self.owner,
                    lease_until=self._firing.lease_until(),
                ),
            )
        new_cursor = cursor if result.cursor is None else result.cursor
        accepted = await self.store.commit_poll(
            sensor.name, cursor, new_cursor, list(records.values())
        )
        started = accepted or []
        self.runtime.emit(
            SensorPolled(
                run_id="",
                name=sensor.name,
                requested=len(records),
                started=len(started),
                cursor=new_cursor,
            )
        )
        for record in started:
            entry.running += 1
            if self._tg is None:
                await self._firing.execute(entry, record)
            else:
                self._tg.start_soon(self._run_claimed, entry, record, False)


def _as_pipeline(pipeline: Any) -> fs.Pipeline:
    from ._spec import pipeline_of

    return pipeline_of(pipeline)
