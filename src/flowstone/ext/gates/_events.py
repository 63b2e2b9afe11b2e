"""The gates plugin's events: a gate opened, was resolved, expired, or was cancelled.

None carries a token; ``waited`` is the seconds from opening to closing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowstone.events import AssetEvent

if TYPE_CHECKING:
    from datetime import datetime

    from flowstone.events import LogEntry

__all__ = ["GateCancelled", "GateEvent", "GateExpired", "GateOpened", "GateResolved"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GateEvent(AssetEvent):
    """Base of the gate events: which gate, and of which kind."""

    gate_id: str
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GateOpened(GateEvent):
    """A gate opened (before its notifier was called)."""

    expires_at: datetime | None = None
    message: str | None = None

    def log_entry(self) -> LogEntry:
        """``INFO``: the gate opened, and until when."""
        until = self.expires_at.isoformat() if self.expires_at is not None else "no deadline"
        return (
            logging.INFO,
            "%s: %s gate %s opened (until %s)",
            (self._where(), self.kind, self.gate_id, until),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResolved(GateEvent):
    """A gate was signalled, approved or rejected."""

    status: str
    by: str | None = None
    waited: float = 0.0

    def log_entry(self) -> LogEntry:
        """``INFO``: how the gate was resolved, and after how long."""
        who = f" by {self.by}" if self.by else ""
        return (
            logging.INFO,
            "%s: gate %s %s%s after %.1fs",
            (self._where(), self.gate_id, self.status, who, self.waited),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GateExpired(GateEvent):
    """A gate reached its deadline unresolved; ``action`` is its ``on_timeout``."""

    action: str
    waited: float = 0.0

    def log_entry(self) -> LogEntry:
        """``WARNING``: the gate expired, and what follows."""
        return (
            logging.WARNING,
            "%s: gate %s expired after %.1fs (on_timeout=%s)",
            (self._where(), self.gate_id, self.waited, self.action),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GateCancelled(GateEvent):
    """A gate was cancelled (``gates.cancel``, or its notifier failed)."""

    reason: str
    waited: float = 0.0

    def log_entry(self) -> LogEntry:
        """``WARNING``: the gate was cancelled, and why."""
        return (
            logging.WARNING,
            "%s: gate %s cancelled: %s",
            (self._where(), self.gate_id, self.reason),
        )
