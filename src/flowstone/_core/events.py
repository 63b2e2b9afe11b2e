"""Lifecycle events delivered to every registered :class:`~flowstone.protocols.EventSink`.

Each event is one frozen object, so fields can be added without breaking sinks. Plugins
define their own events by subclassing :class:`Event` (scatter items, branches, routes,
gates). Sinks match on the class: ``match event: case fs.AssetFailed(): ...``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AssetFailed",
    "AssetRetried",
    "AssetSkipped",
    "AssetStarted",
    "AssetSucceeded",
    "Event",
    "RunFinished",
    "RunStarted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of all events: which run, and when (``time.time()`` seconds)."""

    run_id: str
    timestamp: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run started (or resumed)."""

    selection: tuple[str, ...]
    partition: str | None = None
    resumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    """A run ended; ``status`` is a :class:`~flowstone.RunStatus` value."""

    status: str
    duration: float
    succeeded: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetEvent(Event):
    """Base of the per-asset events."""

    asset: str
    partition: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetStarted(AssetEvent):
    """An asset's attempt started."""

    attempt: int = 1
    kind: str = "asset"


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSucceeded(AssetEvent):
    """An asset produced its value (or reused a current stored one)."""

    duration: float = 0.0
    reused: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetFailed(AssetEvent):
    """An asset failed after its last attempt."""

    error: BaseException
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetRetried(AssetEvent):
    """An attempt failed and the asset will be tried again after ``delay`` seconds."""

    error: BaseException
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSkipped(AssetEvent):
    """An asset was not run: an input was skipped or failed, or a router chose another path."""

    reason: str
