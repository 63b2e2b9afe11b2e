"""Lifecycle events delivered to event sinks (core events; plugins add their own)."""

from ._core.events import AssetEvent as AssetEvent
from ._core.events import AssetFailed as AssetFailed
from ._core.events import AssetRetried as AssetRetried
from ._core.events import AssetSkipped as AssetSkipped
from ._core.events import AssetStarted as AssetStarted
from ._core.events import AssetSucceeded as AssetSucceeded
from ._core.events import AssetWaiting as AssetWaiting
from ._core.events import CheckCompleted as CheckCompleted
from ._core.events import Dropped as Dropped
from ._core.events import Event as Event
from ._core.events import LogEntry as LogEntry
from ._core.events import RunFinished as RunFinished
from ._core.events import RunStarted as RunStarted

__all__ = (
    "AssetEvent",
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
)
