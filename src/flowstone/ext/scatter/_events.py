"""Events a scatter sends to the runtime's event sinks.

``ScatterStarted`` and ``ScatterFinished`` frame each scatter; ``ScatterProgress`` reports
counts about twice a second while it runs (never once per item); ``ScatterItemFinished``
is sent for every item, and is built only when the runtime has sinks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowstone import Status
from flowstone.events import AssetEvent

if TYPE_CHECKING:
    from flowstone.events import LogEntry

__all__ = [
    "ScatterEvent",
    "ScatterFinished",
    "ScatterItemFinished",
    "ScatterProgress",
    "ScatterStarted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ScatterEvent(AssetEvent):
    """Base of the scatter events (``run_id``, ``asset``, ``partition``, ``timestamp``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScatterStarted(ScatterEvent):
    """A scatter started.

    :param total: the number of items, when the source knows it up front
    :param max_concurrent: items (or batches) that may run at once
    :param batched: whether items are grouped into batches
    """

    total: int | None = None
    max_concurrent: int = 1
    batched: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ScatterItemFinished(ScatterEvent):
    """One item reached a terminal state.

    :param key: the item's key
    :param index: the item's position in the source
    :param status: ``Status.SUCCEEDED`` or ``Status.FAILED``
    :param attempts: attempts made
    :param error: ``"Type: message"`` of the last failure, when it failed
    """

    key: str
    index: int
    status: Status
    attempts: int = 1
    error: str | None = None

    def log_entry(self) -> LogEntry:
        """``WARNING`` for a failed item (its key, position, attempts and error), else
        ``DEBUG``."""
        if self.status is Status.FAILED:
            return (
                logging.WARNING,
                "%s item %r (#%d) failed after %d attempt(s): %s",
                (self._where(), self.key, self.index, self.attempts, self.error),
            )
        return (
            logging.DEBUG,
            "%s item %r (#%d) %s",
            (self._where(), self.key, self.index, self.status.value),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScatterProgress(ScatterEvent):
    """Counts while a scatter runs.

    :param done: items that are terminal (succeeded or failed)
    :param total: all items, when known
    :param failed: items that failed
    """

    done: int
    total: int | None
    failed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ScatterFinished(ScatterEvent):
    """A scatter ended.

    :param status: ``"succeeded"``, ``"failed"`` (threshold exceeded or another error) or
        ``"cancelled"``
    :param total: items seen
    :param succeeded: items that succeeded
    :param failed: items that failed
    :param retried: items that needed more than one attempt
    :param duration: seconds
    """

    status: str
    total: int
    succeeded: int
    failed: int
    retried: int = 0
    duration: float = 0.0
