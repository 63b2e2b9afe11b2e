"""Running a durable barrier's items in this process: claim, execute, complete in batches.

:class:`BarrierExecutor` is what the starting process and every worker run for one barrier.
Three kinds of task share it:

* a **claimer** takes pending units (items, or batches) in source order, at most
  ``max_concurrent`` per claim, holding up to half as many again ready to start, and claims
  again once a quarter of ``max_concurrent`` is free: each claim is one statement for many
  items, and executors do not idle through its round trip;
* ``max_concurrent`` **executors** run units through the scatter's
  :class:`~flowstone.ext.scatter.ItemRunner` (rate limit, timeout, retries, per-item context);
* three **flushers** write finished results with one statement per batch, when a third of
  ``max_concurrent`` results wait or ``flush_interval`` after the first one, and at once
  after a failure (the threshold decision then comes quickly); two write while the third
  batch fills. While ``max_concurrent`` results are unwritten (waiting or being written),
  executors start no unit, and one that finishes waits before adding its result.

In the starting process the enumerator also hands items to the executor as it reads them.
Unkeyed, unbatched items it has room for (see :meth:`BarrierExecutor.room`) are not stored
first: they run straight from the source and their rows go in finished, one write per item
(see ``_scatter_local``); when the asset gathers into a list and every result came from them,
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
import math
from collections import deque
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from flowstone import StorageError
from flowstone.ext.scatter import BatchInfo

from ._errors import describe
from ._scatter_codec import MAX_PLAIN_INT, Unstorable, decode, encode

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from flowstone.ext.scatter import Batch, ItemRunner, ScatterReporter

    from ._barrier_rows import Claimed, Counts, LocalOutcome, Outcome
    from ._barrier_statements import BarrierStatements
    from ._scatter_local import LocalLedger
    from ._scatter_session import WorkerSession

__all__ = [
    "CLAIM_LIMIT",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "BarrierExecutor",
    "ExecutorStats",
]

_log = logging.getLogger("flowstone.postgres")

#: The most units one claim takes.
CLAIM_LIMIT = 500
#: Seconds a finished result may wait before it is written.
DEFAULT_FLUSH_INTERVAL = 0.05
#: The longest wait between looks at a barrier while nothing is left to claim.
DEFAULT_POLL_INTERVAL = 0.5
_FIRST_POLL = 0.01
_MAX_FLUSH = 1000  # results per statement at most (flushed sooner when more wait)
_YIELD_EVERY = 64
_WAKE_AT_ONCE = 16
#: Flushes that may be written at once (together they hold at most max_concurrent results).
_FLUSHERS = 3
_PROGRESS_INTERVAL = 0.5
#: Results that load back from their row as they are.
_AS_STORED = (int, str, float, bool, type(None))


class _Signal:
    """Wakes every task waiting when it is set; a set with nobody waiting costs nothing."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def set(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self, seconds: float = math.inf) -> None:
        """Wait until the next :meth:`set` (or ``seconds``)."""
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        if seconds == math.inf:
            await event.wait()
            return
        with anyio.move_on_after(seconds):
            await event.wait()


@dataclass(slots=True)
class _Unit:
    """Claimed items that run as one call (one item, or one batch)."""

    index: int
    idx: list[int]
    keys: list[str]
    items: list[Any]
    error: BaseException | None = None

    #: Taken from the source by the starting process, not stored yet (a :class:`_Local`).
    local = False


class _Local:
    """An item the starting process took from the source unstored (see _scatter_local).

    Made for every such item, so it is kept small; the list views serve the general path.
    """

    __slots__ = ("index", "item", "stored")

    local = True
    error = None

    def __init__(self, index: int, item: Any, stored: tuple[str | None, bytes | None] | None):
        self.index = index
        self.item = item
        #: The item as stored when it fails: ``(json_text, raw)`` (``None``: made on demand).
        self.stored = stored

    @property
    def idx(self) -> list[int]:
        return [self.index]

    @property
    def keys(self) -> list[str]:
        return [str(self.index)]

    @property
    def items(self) -> list[Any]:
        return [self.item]


@dataclass(slots=True)
class ExecutorStats:
    """What one executor did: units and items run here, results that counted."""

    units: int = 0
    items: int = 0
    applied: int = 0


class BarrierExecutor:
    """Claims and runs one barrier's items in this process (see the module documentation).

    :param ops: the scatter operations
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
        self._stay = stay
        self._allow_pickle = allow_pickle
        self._where = where
        self._flush_interval = flush_interval
        self._poll_interval = poll_interval
        self._reap_interval = reap_interval
        unit_size = batch.size_hint if batch is not None else 1
        self._claim_min = max(1, max_concurrent // 4)
        # Claimed units may wait here (not started) while all executors are busy, so that
        # executors never idle through a claim's round trip. Waiting units were not run:
        # a kill re-runs only the executing ones and the unwritten results.
        self._capacity = max_concurrent + max_concurrent // 2
        self._flush_size = min(_MAX_FLUSH, max(1, max_concurrent * unit_size // _FLUSHERS))
        self._max_unflushed = max(1, max_concurrent * unit_size)
        self.stats = ExecutorStats()

        self._queue: deque[_Unit | _Local] = deque()
        self._held: dict[int, _Unit | _Local] = {}
        self._buffer: list[Outcome] = []
        # Results of items taken from the source here (not stored yet), and what says
        # where the checkpoint may stand once they are written.
        self._local: list[LocalOutcome] = []
        self._ledger: LocalLedger | None = None
        self._finish_source: Callable[[], Awaitable[None]] | None = None
        #: Results of items taken here by position, while they load back as they are
        #: (see :meth:`kept_results`); rows those items wrote.
        self._kept: dict[int, Any] | None = None
        self.local_written = 0
        self._inflight = 0
        self._writing: list[list[Outcome]] = []
        self._first_buffered = 0.0
        self._urgent = False
        # Idle executors wait on events of their own; new units wake only as many of them
        # as there are units (waking all of them for every claim costs a wake-up each).
        self._idle: deque[asyncio.Future[None]] = deque()
        self._waking = 0
        self._executors = 0
        self._pool: TaskGroup | None = None
        self._room = _Signal()
        # The starting process's enumerator waits here for room to take items on insert.
        self._roomy = _Signal()
        self._room_wanted = 0
        self._reserved = 0
        self._feeding = False
        self._unclaimed = False
        self._fed = _Signal()
        self._flush = _Signal()
        self._flushed = _Signal()
        # Executors waiting for unwritten results to be written: a flush wakes as many of
        # them as it frees room for (waking them all for every flush costs a wake-up each).
        self._blocked: deque[asyncio.Future[None]] = deque()
        self._claiming = True
        self._executing = True
        self._stopping = False
        self._fatal: BaseException | None = None
        self._last_reap = -math.inf
        self._work_scope: anyio.CancelScope | None = None
        self._scope: anyio.CancelScope | None = None

    # -- running -----------------------------------------------------------------------

    async def run(self) -> Counts:
        """Work on the barrier until done here; return its last known state.

        :raises Exception: a database failure that outlasted the retries (what this
            process held goes back to pending first)
        """
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                for _ in range(_FLUSHERS):
                    tg.start_soon(self._guard, self._flush_loop)
                ticker = anyio.CancelScope()
                if self._reporter is not None and self._reporter.active:
                    tg.start_soon(self._ticker, ticker)
                with anyio.CancelScope() as self._work_scope:
                    async with anyio.create_task_group() as pool:
                        # Executors start as units wait (see _wake): trivial units never
                        # need max_concurrent of them, and tasks cost to start and end.
                        self._pool = pool
                        pool.start_soon(self._guard, self._claim_loop)
                self._executing = False
                self._flush.set()
                while self._buffer or self._local or self._inflight:
                    await self._flushed.wait()
                ticker.cancel()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._final_flush()
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
        self._stop()

    def _stop(self) -> None:
        self._stopping = True
        if self._work_scope is not None:
            self._work_scope.cancel()

    async def _final_flush(self) -> None:
        """Write results still waiting (after a cancellation or a failure), best effort."""
        if not self._buffer and not self._local:
            return
        batch, self._buffer = self._buffer, []
        local, self._local = self._local, []
        try:
            with anyio.fail_after(5):
                if batch:
                    counts, applied = await self._ops.complete(
                        self._id, batch, self._session.worker_no
                    )
                    self.stats.applied += applied
                    self.observe(counts)
                if local:
                    await self._complete_local(local)
        except Exception as exc:
            _log.warning(
                "could not write %d finished results of scatter barrier %d (%s); those "
                "items will run again",
                len(batch) + len(local),
                self._id,
                describe(exc),
            )

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
        owned = [i for unit in self._held.values() for i in unit.idx]
        owned.extend(outcome[0] for outcome in self._buffer)
        for writing in self._writing:
            owned.extend(outcome[0] for outcome in writing)
        return owned

    async def _claim_loop(self) -> None:
        try:
            await self._claim_until_done()
        finally:
            self._claiming = False
            self._wake(len(self._idle))

    async def _claim_until_done(self) -> None:
        ops = self._ops
        session = self._session
        limit = self._max
        stay = self._stay
        delay = _FIRST_POLL
        batched = self._batch is not None
        dry = False
        while not self._stopping:
            if stay and await self._reap_if_due():
                delay = _FIRST_POLL
                dry = False
            if dry and self._feeding:
                # The enumerator hands this process items as it inserts them: claim again
                # once it inserted some unclaimed (or a while later, for items that others
                # handed back).
                dry = False
                if self.counts.status != "open":
                    self._stop()
                    return
                if not self._unclaimed:
                    await self._fed.wait(self._reap_interval)
                self._unclaimed = False
                continue
            free = self._capacity - len(self._held) - self._reserved
            if limit and (free >= self._claim_min or (free > 0 and not self._held)):
                claimed = await ops.claim(
                    self._id,
                    min(free, limit, CLAIM_LIMIT),
                    session.worker_no,
                    batched=batched,
                    owned=self._owned,
                )
                if claimed.units:
                    self._take(claimed)
                    delay = _FIRST_POLL
                    continue
                if self._feeding:
                    dry = True
                    continue
            elif limit:
                # Busy: wait for room (the starting process also wakes to recover the items
                # of dead workers in time).
                await self._room.wait(self._reap_interval if stay else math.inf)
                continue
            counts = await ops.state(self._id)
            self.observe(counts)
            if counts.status != "open":
                self._stop()
                return
            if counts.complete:
                return
            if not stay and counts.source_done:
                if await self._reap_if_due(force=True):
                    continue
                return
            await session.wait(self._topic, delay)
            delay = min(delay * 2, self._poll_interval)

    async def _reap_if_due(self, *, force: bool = False) -> bool:
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

    def _take(self, claimed: Claimed) -> None:
        allow_pickle = self._allow_pickle
        for unit_no, rows in claimed.units.items():
            if unit_no in self._held:
                # Recovered from this very worker while it was out of touch (its lock looked
                # free during a server restart) and claimed again: it is already running here.
                continue
            idx = [row[0] for row in rows]
            keys = [row[1] if row[1] is not None else str(row[0]) for row in rows]
            items: list[Any] = []
            error: BaseException | None = None
            for (_, _, text, raw), key in zip(rows, keys, strict=True):
                try:
                    items.append(decode(text, raw, allow_pickle=allow_pickle))
                except Unstorable as exc:
                    error = StorageError(f"{self._where}: cannot load item {key!r}: {exc}")
                    items.append(None)
            unit = _Unit(unit_no, idx, keys, items, error)
            self._held[unit_no] = unit
            self._queue.append(unit)
        self._wake_one()

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

    def _wake_one(self) -> None:
        """Wake a few idle executors, unless some are already waking up.

        The last of them to wake wakes the next few if units still wait, so executors join
        in as units suspend: trivial units that never suspend keep a few executors busy
        instead of waking all of them for every claim.
        """
        if not self._waking:
            self._wake(min(_WAKE_AT_ONCE, len(self._queue)))

    # -- taking items as they are inserted (the starting process) ------------------------

    def room(self) -> int:
        """How many items this process could take now (0 if it runs none, or is stopping)."""
        if not self._max or self._stopping or not self._claiming or self._batch is not None:
            return 0
        return max(0, self._capacity - len(self._held) - self._reserved)

    @property
    def half(self) -> int:
        """Room worth waiting for before inserting a page (half of what may be held)."""
        return max(1, self._capacity // 2)

    async def wait_room(self, want: int, seconds: float) -> tuple[int, bool]:
        """Wait (at most ``seconds``) until there is room for ``want`` items.

        :return: the room, and whether it reached ``want``
        """
        room = self.room()
        if room >= want or not self._max:
            return room, room >= want
        deadline = monotonic() + seconds
        try:
            while room < want and not self._stopping and self._claiming:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                self._room_wanted = want
                await self._roomy.wait(remaining)
                room = self.room()
        finally:
            self._room_wanted = 0
        return room, room >= want

    def feeding(self, active: bool) -> None:
        """Whether the enumerator is inserting items (and handing this process some)."""
        self._feeding = active
        self._fed.set()

    def fed(self) -> None:
        """The enumerator inserted items unclaimed: look for them."""
        self._unclaimed = True
        self._fed.set()

    def reserve(self, count: int) -> None:
        """Keep room for ``count`` items being inserted claimed (see :meth:`adopt`)."""
        self._reserved += count

    def adopt(self, count: int, units: list[tuple[int, str, Any]]) -> None:
        """Take items that were inserted claimed by this process; free ``count`` reserved.

        :param units: ``(idx, key, item)`` of each item claimed on insert
        """
        self._reserved -= count
        held = self._held
        queue = self._queue
        for idx, key, item in units:
            if idx in held:
                continue
            unit = _Unit(idx, [idx], [key], [item])
            held[idx] = unit
            queue.append(unit)
        if queue:
            self._wake_one()

    def run_before_storing(
        self,
        ledger: LocalLedger,
        finish_source: Callable[[], Awaitable[None]],
        *,
        keep: bool = False,
    ) -> None:
        """Accept items taken from the source unstored (:meth:`take_local`).

        :param ledger: where the checkpoint may stand as their results are written
        :param finish_source: records the end of the source once everything is stored
        :param keep: keep their results in memory too (see :meth:`kept_results`)
        """
        self._ledger = ledger
        self._finish_source = finish_source
        self._kept = {} if keep else None

    def kept_results(self) -> list[Any] | None:
        """The results of the items that succeeded here in source order, when every
        result of the barrier came from this process's own items (``finished`` rows in
        all) and each one loads back from its row as it is (ints, strings, floats, bools,
        ``None``); else ``None``, and the results are read from the rows."""
        kept = self._kept
        if kept is None or self.local_written != self.counts.finished:
            return None
        return [kept[index] for index in sorted(kept)]

    def take_local(self, items: list[tuple[int, Any, str | None, bytes | None]]) -> None:
        """Take items read from the source that are not stored: their results are
        inserted finished (see ``_scatter_local``).

        :param items: ``(idx, item, json_text, raw)``; the text and raw form are ``None``
            when made on demand (a plain item)
        """
        held = self._held
        queue = self._queue
        for idx, item, text, raw in items:
            unit = _Local(idx, item, None if text is None and raw is None else (text, raw))
            held[idx] = unit
            queue.append(unit)
        if queue:
            self._wake_one()

    # -- executing ---------------------------------------------------------------------

    async def _execute_loop(self) -> None:
        queue = self._queue
        idle = self._idle
        runner = self._runner
        # The common case: one item per unit, no retry, timeout or rate limit: call the
        # function directly (what ItemRunner.run would do, without its layers).
        plain = runner is not None and runner.plain and self._batch is None
        call = runner.call if runner is not None else None
        quiet = not self._per_item
        count = 0
        loop = asyncio.get_running_loop()
        self._waking -= 1  # started (see _wake)
        try:
            while True:
                if not queue or self._unwritten() >= self._max_unflushed:
                    if not queue and not self._claiming:
                        return
                    if queue or (not self._held and (self._buffer or self._local)):
                        # Results wait to be written: take no unit until a flush makes room.
                        # Or nothing runs here any more: waiting adds no result to the batch.
                        self._urgent = True
                        self._flush.set()
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
                    self._wake_one()
                if plain and unit.error is None:
                    assert call is not None
                    try:
                        if isinstance(unit, _Local):
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
                            and self._unwritten() < self._max_unflushed
                        ):
                            self._append_int(unit.index, value, unit.local)
                            count += 1
                            if not count % _YIELD_EVERY:
                                await anyio.lowlevel.checkpoint()
                            continue
                        outcomes = [(True, value, 1)]
                else:
                    outcomes = await self._run_unit(unit)
                while self._unwritten() >= self._max_unflushed:
                    # Finished while others filled the room (their items suspended).
                    self._urgent = True
                    self._flush.set()
                    waiter = loop.create_future()
                    self._blocked.append(waiter)
                    try:
                        await waiter
                    finally:
                        if not waiter.done():
                            waiter.cancel()
                        with contextlib.suppress(ValueError):
                            self._blocked.remove(waiter)
                self._append(unit, outcomes)
                count += 1
                if not count % _YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()
        finally:
            self._executors -= 1

    def _unwritten(self) -> int:
        """Finished results not written yet (waiting, or being written)."""
        return self._inflight + len(self._buffer) + len(self._local)

    async def _run_unit(self, unit: _Unit | _Local) -> list[tuple[bool, Any, int]]:
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

    def _append_int(self, idx: int, value: int, local: bool) -> None:
        """:meth:`_append` for the common case: one item, an int result, no events."""
        if not self._buffer and not self._local:
            self._first_buffered = monotonic()
            self._flush.set()  # the first result starts the flusher's clock
        if local:
            buffer: list[Any] = self._local
            buffer.append((idx, "succeeded", str(value), None, None, 1, None, None))
            if self._kept is not None:
                self._kept[idx] = value
        else:
            buffer = self._buffer
            buffer.append((idx, "succeeded", str(value), None, None, 1))
        del self._held[idx]
        stats = self.stats
        stats.units += 1
        stats.items += 1
        if len(self._buffer) + len(self._local) >= self._flush_size:
            self._flush.set()
        free = self._capacity - len(self._held) - self._reserved
        if free >= self._claim_min:
            self._room.set()
        if self._room_wanted and free >= self._room_wanted:
            self._roomy.set()

    def _append(self, unit: _Unit | _Local, outcomes: list[tuple[bool, Any, int]]) -> None:
        buffer = self._buffer
        local = self._local if unit.local else None
        first = not buffer and not self._local
        if first:
            self._first_buffered = monotonic()
        allow_pickle = self._allow_pickle
        reporter = self._reporter if self._per_item else None
        failed = False
        for idx, key, item, (ok, value, attempts) in zip(
            unit.idx, unit.keys, unit.items, outcomes, strict=True
        ):
            outcome: Outcome
            if ok:
                try:
                    text, raw = encode(value, allow_pickle=allow_pickle)
                except Unstorable as exc:
                    ok = False
                    value = StorageError(
                        f"{self._where}: the result of item {key!r} cannot be stored: "
                        f"{exc.problem}; return JSON-able data, or opt in to pickle with "
                        "PostgresStore(allow_pickle=True)"
                    )
                else:
                    outcome = (idx, "succeeded", text, raw, None, attempts)
            if not ok:
                failed = True
                outcome = (idx, "failed", None, None, f"{type(value).__name__}: {value}", attempts)
            if local is None:
                buffer.append(outcome)
            elif ok:
                local.append((*outcome, None, None))
                if self._kept is not None:
                    if value.__class__ in _AS_STORED:
                        self._kept[idx] = value
                    else:
                        self._kept = None  # loads back otherwise: read the rows
            else:
                # A failed item is stored with it, to run again when the barrier reopens.
                stored = (unit.stored if isinstance(unit, _Local) else None) or encode(
                    item, allow_pickle=allow_pickle
                )
                local.append((*outcome, *stored))
            if reporter is not None:
                reporter.item(idx, key, ok, attempts, None if ok else value)
        del self._held[unit.index]
        self.stats.units += 1
        self.stats.items += len(unit.idx)
        if failed:
            self._urgent = True
        if first or failed or len(buffer) + len(self._local) >= self._flush_size:
            self._flush.set()  # the first result starts the flusher's clock
        free = self._capacity - len(self._held) - self._reserved
        if free >= self._claim_min:
            self._room.set()
        if self._room_wanted and free >= self._room_wanted:
            self._roomy.set()

    # -- flushing ----------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        ops = self._ops
        while True:
            waiting = len(self._buffer) + len(self._local)
            if not waiting:
                if not self._executing:
                    return
                await self._flush.wait()
                continue
            if self._executing and not self._urgent and waiting < self._flush_size:
                remaining = self._first_buffered + self._flush_interval - monotonic()
                if remaining > 0:
                    await self._flush.wait(remaining)
                    continue
            batch, self._buffer = self._buffer, []
            local, self._local = self._local, []
            self._urgent = False
            taken = len(batch) + len(local)
            self._inflight += taken
            self._writing.append(batch)
            counts: Counts | None = None
            written = False
            try:
                if batch:
                    counts, applied = await ops.complete(self._id, batch, self._session.worker_no)
                    written = True
                    self.stats.applied += applied
                    self.observe(counts)
                if local:
                    counts = await self._complete_local(local)
            except BaseException:
                # Kept for the final attempt.
                if not written:
                    self._buffer[:0] = batch
                self._local[:0] = local
                raise
            finally:
                self._inflight -= taken
                self._writing = [w for w in self._writing if w is not batch]
                self._flushed.set()
                blocked = self._blocked
                for _ in range(min(taken, len(blocked))):
                    waiter = blocked.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                if self._queue:
                    self._wake_one()
            assert counts is not None
            ledger = self._ledger
            if local and ledger is not None and ledger.due() and self._finish_source is not None:
                await self._finish_source()  # the last item taken here is stored
                counts = self.counts
            if counts.status != "open":
                self._stop()
                await self._notify()
            elif counts.complete or self._near_the_end(counts):
                # Near the end every flush wakes the starting process: two workers' last
                # flushes may each miss the other's, so neither sees the barrier complete.
                await self._notify()
            self._session.poke(self._topic)

    async def _complete_local(self, local: list[LocalOutcome]) -> Counts:
        """Insert the finished rows of items taken here, moving the checkpoint past them."""
        ledger = self._ledger
        assert ledger is not None
        writing = ledger.ranges([outcome[0] for outcome in local])
        enumerated, cursor = ledger.checkpoint(writing)
        last = ledger.complete(writing)
        counts, applied = await self._ops.complete_local(
            self._id,
            local,
            self._session.worker_no,
            enumerated=enumerated,
            cursor=cursor,
            last=last,
            total=ledger.total,
        )
        ledger.written(writing, last=last)
        self.local_written += applied
        self.stats.applied += applied
        self.observe(counts)
        return counts

    def _near_the_end(self, counts: Counts) -> bool:
        if not counts.source_done or counts.total is None:
            return False
        return counts.total - counts.finished <= 4 * max(self._capacity, 50)

    async def _notify(self) -> None:
        try:
            await self._ops.notify(self._session.channel, self._topic)
        except Exception as exc:  # others poll as well
            _log.debug("could not notify scatter workers: %s", describe(exc))
