"""Lifecycle events delivered to every registered :class:`~flowstone.protocols.EventSink`.

Each event is one frozen object, so fields can be added without breaking sinks. Plugins
define their own events by subclassing :class:`Event` (scatter items, branches, routes,
gates). Sinks match on the class: ``match event: case fs.AssetFailed(): ...``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

#: What :meth:`Event.log_entry` returns: a level, a ``%``-format and its arguments.
LogEntry = tuple[int, str, tuple[Any, ...]]

__all__ = [
    "AssetFailed",
    "AssetRetried",
    "AssetSkipped",
    "AssetStarted",
    "AssetSucceeded",
    "AssetWaiting",
    "CheckCompleted",
    "Dropped",
    "Event",
    "LogEntry",
    "RunFinished",
    "RunStarted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events: which run, and when (``time.time()`` seconds)."""

    run_id: str
    timestamp: float = field(default_factory=time.time)

    def log_entry(self) -> LogEntry:
        """How :class:`~flowstone.LoggingSink` logs the event: ``(level, format, args)``.

        By default a ``DEBUG`` line with the event's fields; events override it with a
        line of their own (a plugin's events too). The format is applied only when the
        level is enabled.
        """
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))
        return logging.DEBUG, "%s(%s)", (type(self).__name__, shown)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run started (or resumed)."""

    selection: tuple[str, ...]
    partition: str | None = None
    resumed: bool = False

    def log_entry(self) -> LogEntry:
        """``DEBUG``: the run started or resumed, with its selection."""
        verb = "resumed" if self.resumed else "started"
        where = f" for partition {self.partition}" if self.partition is not None else ""
        return (
            logging.DEBUG,
            "run %s %s%s: %s",
            (self.run_id, verb, where, ", ".join(self.selection)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """A run ended; ``status`` is a :class:`~flowstone.RunStatus` value."""

    status: str
    duration: float
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()

    def log_entry(self) -> LogEntry:
        """``INFO``: how the run ended and how long it took."""
        return logging.INFO, "run %s %s in %.3fs", (self.run_id, self.status, self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetEvent(Event):
    """Base of the per-asset events."""

    asset: str
    partition: str | None = None

    def _where(self) -> str:
        """``asset name`` and, for a partition, ``[key]``."""
        if self.partition is None:
            return f"asset {self.asset}"
        return f"asset {self.asset} [{self.partition}]"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetStarted(AssetEvent):
    """An asset's attempt started."""

    attempt: int = 1
    kind: str = "asset"

    def log_entry(self) -> LogEntry:
        """``DEBUG``: the attempt started."""
        return logging.DEBUG, "%s attempt %d started", (self._where(), self.attempt)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSucceeded(AssetEvent):
    """An asset produced its value (or reused a current stored one).

    ``data_version`` identifies the value (its code version, partition and inputs' versions).
    """

    duration: float = 0.0
    reused: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    data_version: str | None = None

    def log_entry(self) -> LogEntry:
        """``DEBUG``: it succeeded (computed in how long, or reused)."""
        if self.reused:
            return logging.DEBUG, "%s reused its current value", (self._where(),)
        return logging.DEBUG, "%s succeeded in %.3fs", (self._where(), self.duration)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetFailed(AssetEvent):
    """An asset failed after its last attempt."""

    error: BaseException
    attempt: int = 1

    def log_entry(self) -> LogEntry:
        """``ERROR``: it failed, on which attempt, with the error."""
        return (
            logging.ERROR,
            "%s failed on attempt %d: %r",
            (self._where(), self.attempt, self.error),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetRetried(AssetEvent):
    """An attempt failed and the asset will be tried again after ``delay`` seconds."""

    error: BaseException
    attempt: int
    delay: float

    def log_entry(self) -> LogEntry:
        """``WARNING``: an attempt failed and when the next one starts."""
        return (
            logging.WARNING,
            "%s attempt %d failed (%r); retrying in %.2fs",
            (self._where(), self.attempt, self.error, self.delay),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSkipped(AssetEvent):
    """An asset was not run: an input was skipped or failed, or a router chose another path."""

    reason: str

    def log_entry(self) -> LogEntry:
        """``INFO``: it was skipped, and why."""
        return logging.INFO, "%s skipped: %s", (self._where(), self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dropped(Event):
    """A subscriber (``runtime.subscribe``) fell behind: its buffer was full, and the
    ``count`` oldest events it had not read were dropped just before this one.

    ``run_id`` is the subscription's run filter, or ``""`` for a subscription to all runs.
    """

    run_id: str = ""
    count: int

    def log_entry(self) -> LogEntry:
        """``WARNING``: how many events a subscriber lost."""
        return logging.WARNING, "a subscriber fell behind and lost %d event(s)", (self.count,)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetWaiting(AssetEvent):
    """An asset was suspended (or waits behind a suspended input); the run resumes it.

    :ivar reason: what it waits for
    :ivar since: when the wait began, when known
    :ivar until: when the wait ends at the latest, when it has a deadline
    """

    reason: str
    since: datetime | None = None
    until: datetime | None = None

    def log_entry(self) -> LogEntry:
        """``INFO``: the asset waits, and for what."""
        return logging.INFO, "%s waits: %s", (self._where(), self.reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckCompleted(AssetEvent):
    """A check of an asset's value ended (see ``@fs.check``).

    :ivar check: the check's name
    :ivar severity: ``"warn"`` or ``"error"``
    :ivar passed: whether the value passed (``False`` when the check raised)
    :ivar metadata: what the check returned as metadata
    :ivar duration: seconds the check took
    :ivar error: what the check raised (``"TypeName: message"``), if it raised
    """

    check: str
    severity: str
    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None

    def log_entry(self) -> LogEntry:
        """``DEBUG`` when it passed; ``WARNING`` (a ``warn`` check) or ``ERROR`` when not."""
        if self.passed:
            return logging.DEBUG, "%s passed check %s", (self._where(), self.check)
        level = logging.ERROR if self.severity == "error" else logging.WARNING
        detail = f" ({self.error})" if self.error else ""
        return level, "%s failed check %s%s", (self._where(), self.check, detail)
