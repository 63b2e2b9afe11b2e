"""Fixtures for the scheduler tests: a virtual clock and a runtime on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

import flowstone as fs
from flowstone.testing import VirtualClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
async def runtime(clock: VirtualClock) -> AsyncIterator[fs.Runtime]:
    async with fs.Runtime(clock=clock) as rt:
        yield rt
