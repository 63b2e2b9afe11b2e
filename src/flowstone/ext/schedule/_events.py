"""The scheduler's events: a tick fired or was skipped, a sensor polled or failed.

Each carries ``name`` (the schedule's or sensor's). Tick events carry the tick's run id
as ``run_id``; sensor poll events have an empty ``run_id`` (a poll is no run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowstone.events import Event

if TYPE_CHECKING:
    from datetime import datetime

    from flowstone.events import LogEntry

__all__ = ["ScheduleEvent", "SensorFailed", "SensorPolled", "TickFired", "TickSkipped"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleEvent(Event):
    """Base of the scheduler's events: which schedule or sensor."""

    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TickFired(ScheduleEvent):
    """A tick (or a sensor's run request) was claimed and its run is starting."""

    tick: datetime
    partition: str | None = None

    def log_entry(self) -> LogEntry:
        """``INFO``: which tick fired which run."""
        return logging.INFO, "%s: tick %s fired run %s", (self.name, self.tick, self.run_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class TickSkipped(ScheduleEvent):
    """Ticks were not fired: ``reason`` is ``overlap``, ``too_old`` or ``paused``;
    ``count`` ticks up to ``tick`` (catch-up skips many at once)."""

    tick: datetime
    reason: str
    count: int = 1

    def log_entry(self) -> LogEntry:
        """``INFO`` (``WARNING`` for ticks too old to catch up)."""
        level = logging.WARNING if self.reason == "too_old" else logging.INFO
        return (
            level,
            "%s: %d tick(s) up to %s skipped (%s)",
            (
                self.name,
                self.count,
                self.tick,
                self.reason,
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorPolled(ScheduleEvent):
    """A sensor was polled: how many runs it requested and how many started (the others
    had run keys requested before)."""

    requested: int
    started: int
    cursor: str | None = None

    def log_entry(self) -> LogEntry:
        """``DEBUG``: the poll's counts."""
        return (
            logging.DEBUG,
            "sensor %s polled: %d requested, %d started",
            (
                self.name,
                self.requested,
                self.started,
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorFailed(ScheduleEvent):
    """A sensor's poll raised; it is retried after ``retry_in`` seconds."""

    error: str
    failures: int
    retry_in: float

    def log_entry(self) -> LogEntry:
        """``WARNING``: the error and when the poll is retried."""
        return (
            logging.WARNING,
            "sensor %s failed (%d in a row), retry in %.0fs: %s",
            (
                self.name,
                self.failures,
                self.retry_in,
                self.error,
            ),
        )
