"""The plain data of schedules and sensors: ticks, run requests, poll results, status."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

__all__ = [
    "RunRequest",
    "ScheduleStatus",
    "SensorResult",
    "TickRecord",
    "TickStatus",
    "tick_key",
]


class TickStatus(enum.StrEnum):
    """What became of one tick (or one sensor run request)."""

    #: Claimed by a scheduler (it holds the lease): its run is starting or running.
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: The run ended with assets waiting (gates): resume it to go on.
    WAITING = "waiting"
    #: Not fired: ``reason`` says why (``overlap``, ``too_old``, ``paused``).
    SKIPPED = "skipped"

    @property
    def done(self) -> bool:
        """Whether nothing more will happen to the tick."""
        return self is not TickStatus.CLAIMED


def tick_key(tick: datetime) -> str:
    """The key of a schedule's tick: its instant in UTC, ``20250102T013000Z``."""
    return f"{tick:%Y%m%dT%H%M%S}Z" if not tick.microsecond else f"{tick:%Y%m%dT%H%M%S.%f}Z"


@dataclass(frozen=True, slots=True)
class TickRecord:
    """One tick of a schedule, or one run request of a sensor, as the store keeps it.

    Its identity is (``name``, ``key``): for a schedule the key is the scheduled instant
    in UTC (:func:`tick_key`), for a sensor the request's ``run_key``. The run id is
    derived from both, so firing a tick again resumes the same run instead of starting a
    second one.

    :param name: the schedule's or sensor's name
    :param key: the tick's key within it
    :param tick: the scheduled instant (UTC); for a sensor, when the request was made
    :param run_id: the run's id (``name:key``)
    :param status: what became of it
    :param select: the asset names to materialize (empty: the whole pipeline)
    :param partition: the run's partition key
    :param tags: the run's tags (``schedule``, ``tick`` and the request's own)
    :param reason: why it was skipped, or the error of a run that could not start
    :param owner: the scheduler holding (or last holding) the claim
    :param lease_until: until when the claim holds without renewal
    :param finished_at: when it reached a final status
    """

    name: str
    key: str
    tick: datetime
    run_id: str
    status: TickStatus
    select: tuple[str, ...] = ()
    partition: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    reason: str | None = None
    owner: str | None = None
    lease_until: datetime | None = None
    finished_at: datetime | None = None

    def replace(self, **changes: Any) -> TickRecord:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A run a sensor asks for.

    :param select: asset names to materialize (default: the whole pipeline)
    :param partition: the partition key
    :param run_key: de-duplicates per sensor, permanently: a key already requested never
        starts a second run (default: none, every request runs)
    :param tags: extra string tags for the run
    """

    select: str | Sequence[str] | None = None
    partition: str | None = None
    run_key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def selection(self) -> tuple[str, ...]:
        """``select`` as a tuple of names."""
        if self.select is None:
            return ()
        if isinstance(self.select, str):
            return (self.select,)
        return tuple(self.select)


@dataclass(frozen=True, slots=True)
class SensorResult:
    """What one poll of a sensor returns.

    :param run_requests: the runs to start
    :param cursor: the sensor's new cursor, stored atomically with the requested runs;
        ``None`` keeps the current one
    """

    run_requests: Sequence[RunRequest] = ()
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    """One schedule or sensor as :meth:`Scheduler.status` lists it.

    :param name: its name
    :param kind: ``"schedule"`` or ``"sensor"``
    :param paused: whether it is paused in this scheduler
    :param next_tick: the next tick (a schedule) or poll (a sensor), if known
    :param last_tick: the newest tick (or request) recorded, if any
    :param last_status: what became of it
    :param last_run_id: its run's id
    :param skipped: how many ticks this scheduler recorded as skipped
    """

    name: str
    kind: str
    paused: bool
    next_tick: datetime | None
    last_tick: datetime | None
    last_status: TickStatus | None
    last_run_id: str | None
    skipped: int = 0
