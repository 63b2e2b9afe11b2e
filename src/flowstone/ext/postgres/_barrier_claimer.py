"""Claiming a durable barrier's units for this process, and recovering dead workers' items.

:class:`BarrierClaimer` is the claimer task of a
:class:`~._barrier_executor.BarrierExecutor` (see that module for how it fits): it takes
pending units in source order into the executor's :class:`~._held_units.HeldUnits`, at most
``max_concurrent`` per claim and again once enough slots are free, watches the barrier's
state while nothing is left to claim (woken by notifications, or polling with backoff), and
in the starting process puts the running items of dead workers back to pending about every
``reap_interval``. While the starting process's enumerator inserts items (handing this
process some directly), it claims only once a page went in partly unclaimed, or now and
then for items handed back.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import TYPE_CHECKING

from ._work_units import Signal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._barrier_executor import BarrierExecutor
    from ._barrier_statements import BarrierStatements
    from ._held_units import HeldUnits
    from ._scatter_session import WorkerSession

__all__ = ["CLAIM_LIMIT", "BarrierClaimer"]

#: The most units one claim takes.
CLAIM_LIMIT = 500
_FIRST_POLL = 0.01


class BarrierClaimer:
    """Claims one barrier's units for an executor (see the module documentation).

    :param executor: the executor the units are for (its state, ``stop`` and ``observe``)
    :param ops: the barrier statements
    :param session: this process's worker session
    :param barrier_id: the barrier
    :param held: the units this process holds
    :param owned: the positions this process holds or has results of, unwritten
    :param notify: wakes the other processes working on the barrier
    :param max_concurrent: units run at once here (0: claim nothing, only watch)
    :param batched: the barrier's units are batches
    :param stay: stay until every item is terminal (the starting process)
    :param allow_pickle: items may be pickles
    :param where: the asset (and partition), for error messages
    :param poll_interval: the longest wait between looks while idle
    :param reap_interval: the least time between two recoveries of dead workers' items
    """

    def __init__(
        self,
        executor: BarrierExecutor,
        ops: BarrierStatements,
        session: WorkerSession,
        barrier_id: int,
        held: HeldUnits,
        owned: Callable[[], list[int]],
        notify: Callable[[], Awaitable[None]],
        *,
        max_concurrent: int,
        batched: bool,
        stay: bool,
        allow_pickle: bool,
        where: str,
        poll_interval: float,
        reap_interval: float,
    ) -> None:
        self._executor = executor
        self._ops = ops
        self._session = session
        self._id = barrier_id
        self._topic = str(barrier_id)
        self._held = held
        self._owned = owned
        self._notify = notify
        self._limit = max_concurrent
        self._batched = batched
        self._stay = stay
        self._allow_pickle = allow_pickle
        self._where = where
        self._poll_interval = poll_interval
        self._reap_interval = reap_interval
        self._enumerating = False
        self._inserted_unclaimed = False
        self._inserted = Signal()
        self._last_reap = -math.inf

    # -- the starting process's enumerator ---------------------------------------------

    def set_enumerating(self, active: bool) -> None:
        """Whether the enumerator is inserting items (and handing this process some)."""
        self._enumerating = active
        self._inserted.set()

    def inserted_unclaimed(self) -> None:
        """The enumerator inserted items unclaimed: look for them."""
        self._inserted_unclaimed = True
        self._inserted.set()

    # -- claiming ----------------------------------------------------------------------

    async def claim_until_done(self) -> None:
        """Claim units until the barrier is done here (or the executor stops)."""
        executor = self._executor
        ops = self._ops
        session = self._session
        limit = self._limit
        stay = self._stay
        held = self._held
        delay = _FIRST_POLL
        dry = False
        while not executor.stopping:
            if stay and await self.reap_if_due():
                delay = _FIRST_POLL
                dry = False
            if dry and self._enumerating:
                # The enumerator hands this process items as it inserts them: claim again
                # once it inserted some unclaimed (or a while later, for items that others
                # handed back).
                dry = False
                if executor.counts.status != "open":
                    executor.stop()
                    return
                if not self._inserted_unclaimed:
                    await self._inserted.wait(self._reap_interval)
                self._inserted_unclaimed = False
                continue
            free = held.free()
            if limit and (free >= held.claim_min or (free > 0 and not held.units)):
                claimed = await ops.claim(
                    self._id,
                    min(free, limit, CLAIM_LIMIT),
                    session.worker_no,
                    batched=self._batched,
                    owned=self._owned,
                )
                if claimed.units:
                    held.add_claimed(claimed, allow_pickle=self._allow_pickle, where=self._where)
                    delay = _FIRST_POLL
                    continue
                if self._enumerating:
                    dry = True
                    continue
            elif limit:
                # Busy: wait for free slots (the starting process also wakes to recover the
                # items of dead workers in time).
                await held.wait_freed(self._reap_interval if stay else math.inf)
                continue
            counts = await ops.state(self._id)
            executor.observe(counts)
            if counts.status != "open":
                executor.stop()
                return
            if counts.complete:
                return
            if not stay and counts.source_done:
                if await self.reap_if_due(force=True):
                    continue
                return
            await session.wait(self._topic, delay)
            delay = min(delay * 2, self._poll_interval)

    async def reap_if_due(self, *, force: bool = False) -> bool:
        """Put dead workers' running items back to pending (at most every reap_interval).

        :return: whether any came back
        """
        now = monotonic()
        if not force and now - self._last_reap < self._reap_interval:
            return False
        self._last_reap = now
        session = self._session
        if not await self._ops.reap(self._id, session.namespace, session.worker_no):
            return False
        await self._notify()
        return True
