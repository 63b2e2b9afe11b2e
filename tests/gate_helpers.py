"""Helpers of the gates tests: a notifier that keeps what it is given, and a runtime on a
virtual clock with its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import flowstone as fs
from flowstone.ext import gates
from flowstone.testing import VirtualClock

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Inbox:
    """A notifier that keeps what it was given (a test's e-mail inbox)."""

    opened: list[gates.OpenGate] = field(default_factory=list)

    async def notify(self, gate: gates.OpenGate) -> None:
        self.opened.append(gate)

    @property
    def last(self) -> gates.OpenGate:
        return self.opened[-1]


@dataclass
class Env:
    """A runtime on a virtual clock, its events and the notifier's inbox."""

    rt: fs.Runtime
    clock: VirtualClock
    events: fs.MemoryEventSink
