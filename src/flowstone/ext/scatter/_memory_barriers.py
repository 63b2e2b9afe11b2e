"""``MemoryBarrierStore``: scatter barriers kept in this process's memory.

It implements :class:`flowstone.protocols.BarrierStore` for one process: items, the source
checkpoint, claims under leases (their expiry read from a :class:`~flowstone.protocols.Clock`,
so a test moves it with a ``VirtualClock``), results with the first one kept, and the
threshold decision. Several engines in one process may share one store; nothing survives
the process. Pending units are kept in a heap by source position, so a claim costs
``O(limit log n)`` whatever the barrier's size.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flowstone._core.barrier_store import (
    BarrierLease,
    BarrierUnit,
    SourceCheckpoint,
    check_finished_page,
)
from flowstone._core.clock import Clock, SystemClock
from flowstone._core.protocols import BarrierState, ScatterItemResult
from flowstone._core.records import Status

from ._errors import DuplicateScatterKeyError
from ._summary import check_tolerated_failure, threshold_exceeded

__all__ = ["MemoryBarrierStore"]


@dataclass(slots=True)
class _Item:
    key: str
    item: Any
    holder: int | None = None


@dataclass(slots=True)
class _Barrier:
    state: BarrierState
    tolerated: int | float
    run_id: str
    asset: str
    partition: str | None
    recipe: str | None = None
    checkpoint: SourceCheckpoint = field(default_factory=SourceCheckpoint)
    keys: dict[str, int] = field(default_factory=dict)
    items: dict[int, _Item] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)  # a heap; stale entries are skipped
    results: dict[int, ScatterItemResult] = field(default_factory=dict)
    held: dict[int, set[int]] = field(default_factory=dict)  # worker -> item indexes

    def decide(self, state: BarrierState) -> BarrierState:
        exceeded = state.exceeded or threshold_exceeded(state.failed, state.total, self.tolerated)
        return replace(state, exceeded=exceeded)

    def hand_back(self, worker: int) -> int:
        """Put the items ``worker`` holds back to pending; return how many."""
        indexes = self.held.pop(worker, ())
        for index in indexes:
            self.items[index].holder = None
            heapq.heappush(self.pending, index)
        return len(indexes)


class MemoryBarrierStore:
    """Scatter barriers in memory (see the module documentation).

    :param clock: where lease expiry is read (default: the system's clock)
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._barriers: dict[str, _Barrier] = {}
        self._leases: dict[int, float] = {}  # worker -> expiry (POSIX seconds)
        self._workers = itertools.count(1)

    def __repr__(self) -> str:
        return f"MemoryBarrierStore(barriers={len(self._barriers)})"

    def _barrier(self, barrier_id: str) -> _Barrier:
        try:
            return self._barriers[barrier_id]
        except KeyError:
            raise KeyError(f"no scatter barrier {barrier_id!r}") from None

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # -- barriers ------------------------------------------------------------------------

    async def open_barrier(
        self,
        barrier_id: str,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        tolerated_failure: int | float | None,
        total: int | None = None,
        recipe: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> BarrierState:
        """Create the barrier, or return the existing one's state; one of another
        ``recipe`` is started over."""
        tolerated = check_tolerated_failure(0 if tolerated_failure is None else tolerated_failure)
        existing = self._barriers.get(barrier_id)
        if existing is not None and existing.recipe is None:
            existing.recipe = recipe  # stored without one: it takes this one
        if existing is not None and (recipe is None or existing.recipe == recipe):
            return existing.state
        barrier = _Barrier(
            state=BarrierState(barrier_id=barrier_id, total=total),
            tolerated=tolerated,
            run_id=run_id,
            asset=asset,
            partition=partition,
            recipe=recipe,
        )
        self._barriers[barrier_id] = barrier
        return barrier.state

    async def add_items(
        self,
        barrier_id: str,
        items: Sequence[tuple[int, str, Any]],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Add a page of pending items and move the checkpoint, all or nothing.

        :raises DuplicateScatterKeyError: a key is stored (or repeated) at another index
        """
        barrier = self._barrier(barrier_id)
        keys = barrier.keys
        page: dict[str, int] = {}
        for index, key, _ in items:
            known = keys.get(key, page.get(key))
            stored = barrier.items.get(index)
            if (known is not None and known != index) or (stored is not None and stored.key != key):
                raise DuplicateScatterKeyError(barrier.asset, key, index, barrier.partition)
            page[key] = index
        for index, key, item in items:
            if index in barrier.items:
                continue
            keys[key] = index
            barrier.items[index] = _Item(key, item)
            if index not in barrier.results:
                heapq.heappush(barrier.pending, index)
        current = barrier.checkpoint
        if checkpoint.read > current.read or (checkpoint.exhausted and not current.exhausted):
            barrier.checkpoint = moved = SourceCheckpoint(
                read=max(checkpoint.read, current.read),
                cursor=checkpoint.cursor if checkpoint.read >= current.read else current.cursor,
                exhausted=current.exhausted or checkpoint.exhausted,
            )
            if moved.exhausted:
                barrier.state = barrier.decide(replace(barrier.state, total=moved.read))
        return barrier.state

    async def checkpoint(self, barrier_id: str) -> SourceCheckpoint:
        """Where reading the barrier's source stands."""
        return self._barrier(barrier_id).checkpoint

    async def check_items(self, barrier_id: str, items: Sequence[tuple[int, str, Any]]) -> None:
        """Accept every item (they are kept as they are)."""
        self._barrier(barrier_id)

    async def add_finished(
        self,
        barrier_id: str,
        lease: BarrierLease,
        items: Sequence[tuple[int, str, Any]],
        results: Sequence[ScatterItemResult],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Add a page of items run before they were stored, with the results there are,
        and move the checkpoint, all or nothing; items without a result are held by
        ``lease``.

        :raises DuplicateScatterKeyError: a key is stored (or repeated) at another index
        :raises ValueError: a result is of no item of the page, or two are of one item
        """
        check_finished_page(items, results)
        # No step awaits anything, so no other task sees the page half stored.
        await self.add_items(barrier_id, items, checkpoint)
        barrier = self._barrier(barrier_id)
        answered = {result.index for result in results}
        held = barrier.held.setdefault(lease.worker, set())
        for index, _, _ in items:
            entry = barrier.items[index]
            if index not in answered and index not in barrier.results and entry.holder is None:
                entry.holder = lease.worker  # its pending entry is stale now
                held.add(index)
        return await self.record(barrier_id, lease, results)

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled; no unit is handed out any more."""
        barrier = self._barrier(barrier_id)
        if not barrier.state.cancelled:
            barrier.state = replace(barrier.state, cancelled=True, reason=reason)

    async def reopen(self, barrier_id: str) -> BarrierState:
        """Open the barrier again: failed items pending, succeeded ones kept."""
        barrier = self._barrier(barrier_id)
        failed = [r for r in barrier.results.values() if r.status is not Status.SUCCEEDED]
        for result in failed:
            del barrier.results[result.index]
            heapq.heappush(barrier.pending, result.index)
        state = barrier.state
        barrier.state = replace(
            state,
            failed=0,
            retried=state.retried - sum(1 for r in failed if r.attempts > 1),
            exceeded=False,
            cancelled=False,
            reason=None,
        )
        return barrier.state

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's counts and decisions now."""
        return self._barrier(barrier_id).state

    async def drop(self, barrier_id: str) -> None:
        """Forget a barrier with its items and results."""
        self._barriers.pop(barrier_id, None)

    # -- leases --------------------------------------------------------------------------

    async def join(self, *, lease: float) -> BarrierLease:
        """Join as a new worker (a number never handed out before)."""
        if not lease > 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        worker = next(self._workers)
        self._leases[worker] = self._now() + lease
        return BarrierLease(worker, lease)

    async def renew(self, lease: BarrierLease) -> bool:
        """Extend the lease; ``False`` once it ran out or ended."""
        expiry = self._leases.get(lease.worker)
        now = self._now()
        if expiry is None or expiry <= now:
            return False
        self._leases[lease.worker] = now + lease.seconds
        return True

    async def has_other_workers(self, lease: BarrierLease) -> bool:
        """Whether a lease other than ``lease`` has not run out."""
        now = self._now()
        return any(w != lease.worker and e > now for w, e in self._leases.items())

    async def leave(self, lease: BarrierLease) -> None:
        """End the lease and hand back its units in every barrier."""
        self._leases.pop(lease.worker, None)
        for barrier in self._barriers.values():
            barrier.hand_back(lease.worker)

    # -- claiming and recording ----------------------------------------------------------

    async def claim(self, barrier_id: str, lease: BarrierLease, limit: int) -> list[BarrierUnit]:
        """Hold up to ``limit`` pending items for ``lease``, in source order."""
        barrier = self._barrier(barrier_id)
        state = barrier.state
        expiry = self._leases.get(lease.worker)
        if state.exceeded or state.cancelled or expiry is None or expiry <= self._now():
            return []
        units: list[BarrierUnit] = []
        held = barrier.held.setdefault(lease.worker, set())
        pending = barrier.pending
        items = barrier.items
        results = barrier.results
        while pending and len(units) < limit:
            index = heapq.heappop(pending)
            entry = items[index]
            if entry.holder is not None or index in results:
                continue  # a stale entry: claimed since, or finished
            entry.holder = lease.worker
            held.add(index)
            units.append(BarrierUnit(index, (index,), (entry.key,), (entry.item,)))
        return units

    async def record(
        self,
        barrier_id: str,
        lease: BarrierLease | None,
        results: Sequence[ScatterItemResult],
    ) -> BarrierState:
        """Record terminal results; an item keeps its first one.

        :param lease: the lease the results come under (``None``: from code that drives
            items itself)
        """
        barrier = self._barrier(barrier_id)
        state = barrier.state
        succeeded, failed, retried = state.succeeded, state.failed, state.retried
        stored = barrier.results
        for result in results:
            index = result.index
            if index in stored:
                continue
            entry = barrier.items.get(index)
            if entry is None:
                barrier.items[index] = _Item(result.key, None)
                barrier.keys.setdefault(result.key, index)
            elif entry.holder is not None:
                barrier.held[entry.holder].discard(index)
                entry.holder = None
            stored[index] = result
            if result.status is Status.SUCCEEDED:
                succeeded += 1
            else:
                failed += 1
            if result.attempts > 1:
                retried += 1
        barrier.state = barrier.decide(
            replace(state, succeeded=succeeded, failed=failed, retried=retried)
        )
        return barrier.state

    async def release(self, barrier_id: str, lease: BarrierLease) -> None:
        """Hand back the items ``lease`` holds in the barrier."""
        self._barrier(barrier_id).hand_back(lease.worker)

    async def recover(self, barrier_id: str, lease: BarrierLease) -> int:
        """Put back to pending the items of leases that ran out (not ``lease``'s)."""
        now = self._now()
        leases = self._leases
        for worker, expiry in list(leases.items()):
            if expiry <= now and worker != lease.worker:
                del leases[worker]

        barrier = self._barrier(barrier_id)
        dead = [
            worker for worker in barrier.held if worker != lease.worker and worker not in leases
        ]
        return sum(barrier.hand_back(worker) for worker in dead)

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The recorded results in source order."""
        barrier = self._barrier(barrier_id)
        return _Results(sorted(barrier.results.values(), key=_index_of))


_index_of: Callable[[ScatterItemResult], int] = operator.attrgetter("index")


class _Results(AsyncIterator[ScatterItemResult]):
    """Iterates a list asynchronously (a class, so stopping early leaves nothing to close)."""

    __slots__ = ("_iterator",)

    def __init__(self, results: list[ScatterItemResult]) -> None:
        self._iterator = iter(results)

    async def __anext__(self) -> ScatterItemResult:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None
