"""Fixtures of the gates tests: a runtime on a virtual clock, with its events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

import flowstone as fs
from flowstone.testing import VirtualClock
from gate_helpers import START, Env


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest_asyncio.fixture
async def env(clock: VirtualClock) -> AsyncIterator[Env]:
    events = fs.MemoryEventSink()
    async with fs.Runtime(clock=clock, event_sinks=[events]) as rt:
        yield Env(rt, clock, events)
