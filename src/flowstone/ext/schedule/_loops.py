"""The loops of a :class:`~._scheduler.Scheduler`: schedules, sensors and the sweeper.

:class:`Loops` is the part of the scheduler that runs in its task group: one loop per
schedule (what fell due since its last tick, then a sleep on the clock until the next),
one per sensor (a poll, then a sleep until its interval ends or it is woken), and the
sweeper that takes over claims whose lease ended. The scheduler builds the state.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ._events import SensorFailed, SensorPolled, TickSkipped
from ._sensors import RuntimeAware
from ._types import TickRecord, TickStatus, tick_key

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    import flowstone as fs
    from flowstone.events import AssetSucceeded

    from ._firing import Entry, Firing
    from ._sensors import Sensor
    from ._spec import Schedule
    from ._store import ScheduleStore

__all__ = ["Loops"]

_log = logging.getLogger("flowstone.schedule")


class Loops:
    """The background loops of a scheduler (a base of ``Scheduler``, which builds the state)."""

    runtime: fs.Runtime
    store: ScheduleStore
    owner: str
    grace: timedelta
    sweep: timedelta
    max_backoff: float
    _firing: Firing
    _entries: dict[str, Entry]
    _tg: TaskGroup | None
    _progress: anyio.Event
    _sweeper_asleep: bool

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
