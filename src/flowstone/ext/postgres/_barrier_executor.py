"""Running a durable barrier's items in this process: claim, execute, complete in batches.

:class:`BarrierExecutor` is what the starting process and every worker run for one barrier.
Three kinds of task share it:

* a **claimer** (:class:`~._barrier_claimer.BarrierClaimer`) takes pending units (items,
  or batches) in source order, at most ``max_concurrent`` per claim, holding up to half as
  many again ready to start, and claims again once a quarter of ``max_concurrent`` is free:
  each claim is one statement for many items, and executors do not idle through its round
  trip;
* ``max_concurrent`` **executors** run units through the scatter's
  :class:`~flowstone.ext.scatter.ItemRunner` (rate limit, timeout, retries, per-item context);
* a few **flushers** write finished results through a
  :class:`~._result_writer.ResultWriter`, one statement per batch (see there when a batch
  is due, and how executors wait while ``max_concurrent`` results are unwritten).

In the starting process the enumerator also hands items to the executor as it reads them.
Unkeyed, unbatched items it has free slots for (see ``_held_units``) are not stored first:
they run straight from the source and their rows go in finished, one write per item (see
``_scatter_local``); when the asset gathers into a list and every result came from them,
the list is made from the results kept in memory rather than read back. Other items it has
room for go in already claimed by this process and straight to the executors, with no claim
and no decode; the rest go in unclaimed, for any worker. Meanwhile the claimer claims only
when a page went in partly unclaimed (or now and then, for items handed back). Idle
executors wake a few at a time, as units wait: trivial units do not wake all for each claim.

So a kill makes at most ``max_concurrent`` executing items and ``max_concurrent`` finished
but unwritten results run again (items held but not started were never run: claimed ones go
back to the pool, unstored ones are read again from the checkpoint). When the barrier stops
being open (threshold exceeded, cancelled), the in-flight items are cancelled; whatever this
process still holds goes back to pending.

A starting process (``stay=True``) stays until every item is terminal. About every
``reap_interval`` (busy or not) it puts the running items of dead workers back to pending
(a worker is dead once its advisory lock is gone or its lease ran out), and with nothing
left to claim it waits for the others, woken by notifications (or polling with backoff). A
worker leaves once nothing is left to claim, after one last look for dead workers' items.
Cancelled or failing, an executor still tries to write the results it has (briefly) and
hands back every item it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from flowstone.ext.scatter import BatchInfo

from ._barrier_claimer import CLAIM_LIMIT, BarrierClaimer
from ._errors import describe
from ._held_units import HeldUnits
from ._result_writer import FLUSHERS, ResultWriter
from ._scatter_codec import MAX_PLAIN_INT
from ._work_units import ExecutorStats, UnstoredItem

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from flowstone.ext.scatter import Batch, ItemRunner, ScatterReporter

    from ._barrier_rows import Counts
    from ._barrier_statements import BarrierStatements
    from ._scatter_local import LocalLedger
    from ._scatter_session import WorkerSession
    from ._work_units import WorkUnit

__all__ = [
    "CLAIM_LIMIT",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "BarrierExecutor",
    "ExecutorStats",
]

_log = logging.getLogger("flowstone.postgres")

#: Seconds a finished result may wait before it is written.
DEFAULT_FLUSH_INTERVAL = 0.05
#: The longest wait between looks at a barrier while nothing is left to claim.
DEFAULT_POLL_INTERVAL = 0.5
_YIELD_EVERY = 64
_WAKE_AT_ONCE = 16
_PROGRESS_INTERVAL = 0.5


class BarrierExecutor:
    """Claims and runs one barrier's items in this process (see the module documentation).

    :param ops: the barrier statements
    :param session: this process's worker session
    :param barrier_id: the barrier
    :param runner: runs one item or batch (``None`` with ``max_concurrent=0``)
    :param counts: the barrier's state when joined
    :param max_concurrent: units run at once here (0: only watch and recover, run nothing)
    :param batch: the batching options, for batched barriers
    :param batch_input: the evaluated ``batch_input``
    :param reporter: events and progress (``None``: silent)
    :param stay: stay until every item is terminal (the starting process)
    :param allow_pickle: items and results may be pickles
    :param where: the asset (and partition), for error messages
    :param flush_interval: seconds a result may wait before it is written
    :param poll_interval: the longest wait between looks while idle
    :param reap_interval: the least time between two recoveries of dead workers' items
    :param compression: the codec results are compressed with above
        ``compression_threshold`` bytes (``None``: none)
    :param compression_threshold: the smallest result, in bytes, that is compressed
    """

    def __init__(
        self,
        ops: BarrierStatements,
        session: WorkerSession,
        barrier_id: int,
        runner: ItemRunner | None,
        counts: Counts,
        *,
        max_concurrent: int,
        batch: Batch | None = None,
        batch_input: Any = None,
        reporter: ScatterReporter | None = None,
        stay: bool = False,
        allow_pickle: bool = False,
        where: str = "",
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        reap_interval: float = 0.5,
        compression: str | None = None,
        compression_threshold: int = 0,
    ) -> None:
        if max_concurrent < 0:
            raise ValueError(f"max_concurrent must be at least 0, got {max_concurrent!r}")
        if max_concurrent and runner is None:
            raise ValueError("an executor that runs items needs a runner")
        self._ops = ops
        self._session = session
        self._id = barrier_id
        self._topic = str(barrier_id)
        self._runner = runner
        self.counts = counts
        self._max = max_concurrent
        self._batch = batch
        self._batch_input = batch_input
        self._reporter = reporter
        self._per_item = reporter is not None and reporter.per_item
        #: The units this process holds; the enumerator hands items over through it.
        self.held = HeldUnits(max_concurrent, self._wake_some, hand_over=batch is None)
        self.stats = ExecutorStats()
        self._writer = ResultWriter(
            ops,
            session,
            barrier_id,
            self.stats,
            self.observe,
            max_concurrent=max_concurrent,
            unit_size=batch.size_hint if batch is not None else 1,
            flush_interval=flush_interval,
            allow_pickle=allow_pickle,
            where=where,
            reporter=reporter if self._per_item else None,
            compression=compression,
            compression_threshold=compression_threshold,
        )

        self._finish_source: Callable[[], Awaitable[None]] | None = None
        # Idle executors wait on events of their own; new units wake only as many of them
        # as there are units (waking all of them for every claim costs a wake-up each).
        self._idle: deque[asyncio.Future[None]] = deque()
        self._waking = 0
        self._executors = 0
        self._pool: TaskGroup | None = None
        self._claiming = True
        #: Set once the executor stops (see :meth:`stop`): nothing new is claimed.
        self.stopping = False
        self._fatal: BaseException | None = None
        #: The claimer task's state; the enumerator tells it what it inserts.
        self.claimer = BarrierClaimer(
            self,
            ops,
            session,
            barrier_id,
            self.held,
            self._owned,
            self._notify,
            max_concurrent=max_concurrent,
            batched=batch is not None,
            stay=stay,
            allow_pickle=allow_pickle,
            where=where,
            poll_interval=poll_interval,
            reap_interval=reap_interval,
        )
        self._work_scope: anyio.CancelScope | None = None
        self._scope: anyio.CancelScope | None = None

    # -- running -----------------------------------------------------------------------

    async def run(self) -> Counts:
        """Work on the barrier until done here; return its last known state.

        :raises Exception: a database failure that outlasted the retries (what this
            process held goes back to pending first)
        """
        writer = self._writer
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                for _ in range(FLUSHERS):
                    tg.start_soon(self._guard, self._write_results)
                ticker = anyio.CancelScope()
                if self._reporter is not None and self._reporter.active:
                    tg.start_soon(self._ticker, ticker)
                with anyio.CancelScope() as self._work_scope:
                    async with anyio.create_task_group() as pool:
                        # Executors start as units wait (see _wake): trivial units never
                        # need max_concurrent of them, and tasks cost to start and end.
                        self._pool = pool
                        pool.start_soon(self._guard, self._claim_loop)
                writer.close()
                await writer.drain()
                ticker.cancel()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await writer.write_rest()
                await self._release()
        if self._fatal is not None:
            raise self._fatal
        return self.counts

    async def _guard(self, body: Callable[[], Awaitable[None]]) -> None:
        try:
            await body()
        except Exception as exc:
            if self._fatal is None:
                self._fatal = exc
            if self._scope is not None:
                self._scope.cancel()

    def stop(self) -> None:
        """Stop working: in-flight items are cancelled, nothing new is claimed."""
        self.stopping = True
        self.held.stop_hand_over()
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def _release(self) -> None:
        """Hand back what this process still holds in the barrier (best effort)."""
        if not self._max:
            return
        try:
            with anyio.fail_after(10):
                await self._ops.release_worker(self._id, self._session.worker_no)
        except Exception as exc:
            _log.warning(
                "could not hand back the items held in scatter barrier %d (%s); they return "
                "to the pool when this worker's lease ends",
                self._id,
                describe(exc),
            )

    def observe(self, counts: Counts) -> None:
        """Take a newer state of the barrier (from any statement)."""
        current = self.counts
        if current.status != "open" and counts.status == "open":
            return  # an answer older than the one that ended the barrier
        if (
            counts.status != current.status
            or counts.finished >= current.finished
            or (counts.source_done and not current.source_done)
        ):
            self.counts = counts

    async def _ticker(self, scope: anyio.CancelScope) -> None:
        reporter = self._reporter
        assert reporter is not None
        with scope:
            while True:
                await anyio.sleep(_PROGRESS_INTERVAL)
                counts = self.counts
                reporter.progress(counts.finished, counts.total, counts.failed)

    # -- claiming ----------------------------------------------------------------------

    def _owned(self) -> list[int]:
        owned = self.held.positions()
        owned.extend(self._writer.owned())
        return owned

    async def _claim_loop(self) -> None:
        try:
            await self.claimer.claim_until_done()
        finally:
            self._claiming = False
            self.held.stop_hand_over()
            self._wake(len(self._idle))

    def _wake(self, count: int) -> None:
        """Wake up to ``count`` idle executors, starting new ones (up to ``max_concurrent``)
        when too few are idle."""
        idle = self._idle
        while count > 0 and idle:
            waiter = idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._waking += 1
                count -= 1
        pool = self._pool
        if count > 0 and pool is not None and self._claiming:
            for _ in range(min(count, self._max - self._executors)):
                self._executors += 1
                self._waking += 1  # until it runs
                pool.start_soon(self._guard, self._execute_loop)

    def _wake_some(self) -> None:
        """Wake a few idle executors, unless some are already waking up.

        The last of them to wake wakes the next few if units still wait, so executors join
        in as units suspend: trivial units that never suspend keep a few executors busy
        instead of waking all of them for every claim.
        """
        if not self._waking:
            self._wake(min(_WAKE_AT_ONCE, len(self.held.queue)))

    # -- the starting process's enumerator ---------------------------------------------

    def accept_unstored(
        self,
        ledger: LocalLedger,
        finish_source: Callable[[], Awaitable[None]],
        *,
        keep: bool = False,
    ) -> None:
        """Accept items taken from the source unstored (:meth:`take_unstored`).

        :param ledger: where the checkpoint may stand as their results are written
        :param finish_source: records the end of the source once everything is stored
        :param keep: keep their results in memory too (see :meth:`kept_results`)
        """
        self._writer.accept_unstored(ledger, keep=keep)
        self._finish_source = finish_source

    def kept_results(self) -> list[Any] | None:
        """The results of the items that succeeded here in source order, when every
        result of the barrier came from this process's own items (``finished`` rows in
        all) and each one loads back from its row as it is (ints, strings, floats, bools,
        ``None``); else ``None``, and the results are read from the rows."""
        return self._writer.kept_results(self.counts.finished)

    # -- executing ---------------------------------------------------------------------

    async def _execute_loop(self) -> None:
        held = self.held
        queue = held.queue
        idle = self._idle
        writer = self._writer
        runner = self._runner
        # The common case: one item per unit, no retry, timeout or rate limit: call the
        # function directly (what ItemRunner.run would do, without its layers).
        plain = runner is not None and runner.plain and self._batch is None
        call = runner.call if runner is not None else None
        quiet = not self._per_item and writer.stores_ints_as_text
        count = 0
        loop = asyncio.get_running_loop()
        self._waking -= 1  # started (see _wake)
        try:
            while True:
                if not queue or writer.full():
                    if not queue and not self._claiming:
                        # Others may have gone idle while the writer was full and units
                        # waited; this one took the last of them: nothing is left for them.
                        self._wake(len(idle))
                        return
                    if queue or (not held.units and writer.has_waiting()):
                        # Results wait to be written: take no unit until a write makes room.
                        # Or nothing runs here any more: waiting adds no result to the batch.
                        writer.hurry()
                    waiter = loop.create_future()
                    idle.append(waiter)
                    try:
                        await waiter
                    finally:
                        if waiter.done() and not waiter.cancelled():
                            self._waking -= 1
                        else:
                            with contextlib.suppress(ValueError):
                                idle.remove(waiter)
                    continue
                unit = queue.popleft()
                if queue:
                    self._wake_some()
                if plain and unit.error is None:
                    assert call is not None
                    try:
                        if isinstance(unit, UnstoredItem):
                            value = await call(str(unit.index), unit.item, None)
                        else:
                            value = await call(unit.keys[0], unit.items[0], None)
                    except Exception as exc:
                        outcomes = [(False, exc, 1)]
                    else:
                        if (
                            quiet
                            and value.__class__ is int
                            and -MAX_PLAIN_INT < value < MAX_PLAIN_INT
                            and not writer.full()
                        ):
                            writer.add_int(unit.index, value, unit.local)
                            self._finished(unit.index, 1)
                            count += 1
                            if not count % _YIELD_EVERY:
                                await anyio.lowlevel.checkpoint()
                            continue
                        outcomes = [(True, value, 1)]
                else:
                    outcomes = await self._run_unit(unit)
                while writer.full():
                    # Finished while others filled the room (their items suspended).
                    await writer.wait_for_room()
                writer.add(unit, outcomes)
                self._finished(unit.index, len(unit.idx))
                count += 1
                if not count % _YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()
        finally:
            self._executors -= 1

    async def _run_unit(self, unit: WorkUnit) -> list[tuple[bool, Any, int]]:
        if unit.error is not None:
            return [(False, unit.error, 1)] * len(unit.idx)
        runner = self._runner
        assert runner is not None
        if self._batch is None:
            return [await runner.run(unit.keys[0], unit.items[0])]
        counts = self.counts
        info = BatchInfo(
            unit.index, counts.batches if counts.source_done else None, self._batch_input
        )
        return await runner.run_batch(
            unit.keys, unit.items, info, collect_errors=self._batch.collect_errors
        )

    def _finished(self, unit_no: int, items: int) -> None:
        """A unit's results went to the writer: free its slot."""
        stats = self.stats
        stats.units += 1
        stats.items += items
        self.held.finished(unit_no)

    # -- writing -----------------------------------------------------------------------

    async def _write_results(self) -> None:
        """One flusher: write batches as they fall due, and act on the state they return."""
        writer = self._writer
        while (written := await writer.write_next()) is not None:
            counts, wrote_unstored = written
            if self.held.queue:
                self._wake_some()
            ledger = writer.ledger
            if (
                wrote_unstored
                and ledger is not None
                and ledger.due()
                and self._finish_source is not None
            ):
                await self._finish_source()  # the last item taken here is stored
                counts = self.counts
            if counts.status != "open":
                self.stop()
                await self._notify()
            elif counts.complete or self._near_the_end(counts):
                # Near the end every flush wakes the starting process: two workers' last
                # flushes may each miss the other's, so neither sees the barrier complete.
                await self._notify()
            self._session.poke(self._topic)

    def _near_the_end(self, counts: Counts) -> bool:
        if not counts.source_done or counts.total is None:
            return False
        return counts.total - counts.finished <= 4 * max(self.held.capacity, 50)

    async def _notify(self) -> None:
        try:
            await self._ops.notify(self._session.channel, self._topic)
        except Exception as exc:  # others poll as well
            _log.debug("could not notify scatter workers: %s", describe(exc))
