"""Fixtures of the scatter tests: a barrier store of each kind (``backend``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from flowstone.ext.scatter import MemoryBarrierStore
from flowstone.protocols import BarrierLease, BarrierStore
from flowstone.testing import VirtualClock

BARRIER_STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@dataclass
class Backend:
    """A barrier store, and how to make one of its leases run out at once."""

    store: BarrierStore
    lapse: Callable[[BarrierLease], Awaitable[None]]


@pytest.fixture
async def pg_backend(pg_store: Any) -> AsyncIterator[Backend]:
    """The PostgreSQL barrier store on a fresh schema; its leases' sessions closed after."""
    from flowstone.ext.postgres import PostgresScatterCoordinator

    coordinator = PostgresScatterCoordinator(pg_store)
    sql = (
        f"UPDATE {coordinator.ops.q.workers} SET lease_until = now() - interval '1 second' "
        "WHERE worker_no = $1"
    )

    async def lapse(lease: BarrierLease) -> None:
        async with pg_store.pool.acquire() as conn:
            await conn.execute(sql, lease.worker)

    try:
        yield Backend(coordinator.barriers, lapse)
    finally:
        await coordinator.aclose()


@pytest.fixture(params=BARRIER_STORES)
def backend(request: pytest.FixtureRequest) -> Backend:
    """A barrier store of each kind, empty, and how to make a lease run out."""
    if request.param == "memory":
        clock = VirtualClock()

        async def lapse(lease: BarrierLease) -> None:
            await clock.advance(lease.seconds + 1)

        return Backend(MemoryBarrierStore(clock=clock), lapse)
    result: Backend = request.getfixturevalue("pg_backend")
    return result
