"""Firing one claimed tick: its lease kept alive, its run materialized, its outcome stored.

Runs are tagged through a :class:`~flowstone.protocols.RunTagger` that the scheduler
registers on its runtime once (:func:`schedule_tagger`): the tags of the tick being fired
are set in a context variable around ``materialize``, so the run's record carries them.
The same sink relays asset events to the sensors that wait for them.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from flowstone.events import AssetSucceeded

from ._events import TickFired
from ._types import TickRecord, TickStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import datetime

    import flowstone as fs
    from flowstone.events import Event

    from ._store import ScheduleStore

__all__ = ["Entry", "Firing", "ScheduleTagger", "schedule_tagger"]

_log = logging.getLogger("flowstone.schedule")
_RUN_TAGS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "flowstone_schedule_tags", default=None
)


class ScheduleTagger:
    """The event sink that tags scheduled runs and tells sensors of asset successes."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[AssetSucceeded], None]] = []

    def __repr__(self) -> str:
        return "ScheduleTagger()"

    def run_tags(self, run: fs.RunRecord, stored: fs.RunRecord | None) -> Mapping[str, str]:
        """The tags of the tick being fired in this context (none elsewhere)."""
        return _RUN_TAGS.get() or {}

    def emit(self, event: Event) -> None:
        """Hand an asset's success to the listening sensors."""
        if isinstance(event, AssetSucceeded) and not event.reused:
            for listener in list(self.listeners):
                listener(event)


def schedule_tagger(runtime: fs.Runtime) -> ScheduleTagger:
    """The runtime's tagger, registered as an event sink on first use."""
    for sink in runtime.event_sinks:
        if isinstance(sink, ScheduleTagger):
            return sink
    tagger = ScheduleTagger()
    runtime.add_event_sink(tagger)
    return tagger


@dataclass(eq=False)
class Entry:
    """One schedule or sensor in a scheduler, with its live state."""

    target: Any
    kind: str
    pipeline: fs.Pipeline
    paused: bool = False
    next_tick: datetime | None = None
    skipped: int = 0
    running: int = 0
    buffered: bool = False
    #: Whether its loop waits for the next tick or poll (see ``Scheduler.wait_idle``).
    sleeping: bool = False
    scope: anyio.CancelScope | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)

    @property
    def name(self) -> str:
        """The schedule's or sensor's name."""
        return str(self.target.name)

    def notify(self) -> None:
        """Wake what waits on this entry's state (pause, resume, a sensor to poll now)."""
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    def run_ended(self) -> None:
        """Wake what waits for a run of this entry to end (a buffered tick)."""
        ended, self.ended = self.ended, anyio.Event()
        ended.set()


class Firing:
    """Fires claimed ticks for one scheduler.

    :param runtime: where runs materialize (and whose clock leases are read on)
    :param store: where claims are renewed and outcomes recorded
    :param owner: this scheduler's name in claims
    :param lease: seconds a claim holds without renewal
    :param on_change: called when a run ends (its outcome recorded)
    """

    def __init__(
        self,
        runtime: fs.Runtime,
        store: ScheduleStore,
        owner: str,
        lease: float,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.runtime = runtime
        self.on_change = on_change
        self.store = store
        self.owner = owner
        self.lease = timedelta(seconds=lease)
        self.started = 0

    def lease_until(self) -> datetime:
        """The end of a lease taken now."""
        return self.runtime.clock.now() + self.lease

    async def others_active(self, entry: Entry, record: TickRecord) -> bool:
        """Whether a run of ``entry`` other than ``record``'s holds a live claim."""
        now = self.runtime.clock.now()
        return any(r.key != record.key for r in await self.store.active(entry.name, now))

    async def _heartbeat(self, record: TickRecord) -> None:
        clock = self.runtime.clock
        while True:
            await clock.sleep_until(clock.now() + self.lease / 3)
            try:
                kept = await self.store.renew(
                    record.name, record.key, self.owner, self.lease_until()
                )
            except Exception:
                _log.exception("%s: could not renew the claim of tick %s", record.name, record.key)
                continue
            if not kept:
                _log.warning("%s: the claim of tick %s was taken over", record.name, record.key)
                return

    async def _wait_idle(self, entry: Entry, record: TickRecord) -> None:
        """Wait until no other run of ``entry`` goes on (``buffer_one``)."""
        clock = self.runtime.clock
        while entry.running or await self.others_active(entry, record):
            changed = entry.ended
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:

                    async def after_a_while() -> None:
                        await clock.sleep_until(clock.now() + self.lease / 3)
                        scope.cancel()

                    tg.start_soon(after_a_while)
                    await changed.wait()
                    scope.cancel()

    async def execute(self, entry: Entry, record: TickRecord, *, buffered: bool = False) -> None:
        """Fire ``record`` (claimed by this scheduler) and record its outcome.

        ``entry.running`` (or ``entry.buffered``) was raised by the caller when it claimed;
        it is lowered here. Cancelled (the scheduler stopping), the claim is left to its
        lease: another scheduler, or this one restarted, takes it over and resumes the run.
        """
        status, reason = TickStatus.FAILED, None
        try:
            async with anyio.create_task_group() as beat:
                beat.start_soon(self._heartbeat, record)
                try:
                    if buffered:
                        await self._wait_idle(entry, record)
                        entry.buffered = False
                        entry.running += 1
                        buffered = False
                    status, reason = await self._materialize(entry, record)
                finally:
                    beat.cancel_scope.cancel()
        finally:
            if buffered:
                entry.buffered = False
            else:
                entry.running -= 1
            entry.run_ended()
        try:
            await self.store.finish(
                record.name, record.key, self.owner, status, self.runtime.clock.now(), reason
            )
        except Exception:
            _log.exception("%s: could not record the outcome of tick %s", record.name, record.key)
        finally:
            self.on_change()

    async def _materialize(self, entry: Entry, record: TickRecord) -> tuple[TickStatus, str | None]:
        if record.reason is not None:  # it could not even be prepared (its partition)
            return TickStatus.FAILED, record.reason
        self.runtime.emit(
            TickFired(
                run_id=record.run_id, name=record.name, tick=record.tick, partition=record.partition
            )
        )
        self.started += 1
        token = _RUN_TAGS.set(dict(record.tags))
        try:
            result = await self.runtime.materialize(
                entry.pipeline,
                list(record.select) or None,
                partition=record.partition,
                run_id=record.run_id,
                raise_on_error=False,
            )
        except Exception as exc:
            _log.exception("%s: run %s could not run", record.name, record.run_id)
            return TickStatus.FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            _RUN_TAGS.reset(token)
        if not result.ok:
            _log.warning("%s: run %s ended %s", record.name, record.run_id, result.status)
        return TickStatus(str(result.status)), None
