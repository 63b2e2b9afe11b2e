"""The scatter engine over a :class:`~flowstone.protocols.BarrierStore`: claim, run, record.

:class:`BarrierEngine` is the :class:`~._engine.ScatterEngine` (the same worker pool,
runner, retries, timeouts, rate limit, counters, progress and stopping) with two parts
swapped for the store's:

* its feed is a :class:`ClaimFeed`: pages are claims of the barrier's pending items for
  this process's lease, so several processes (or engines) sharing a store run disjoint
  items. With nothing to claim it watches the barrier, putting back the items of leases
  that ran out, until every item is terminal (``stay=True``: the process that started the
  scatter) or until nothing is left to claim (a worker that joined);
* its results go to a :class:`ResultRecorder`, which writes them in batches (a third of
  ``max_concurrent`` results, or ``flush_interval`` after the first one waits, or at once
  after a failure); the store decides the failure threshold, and the engine stops as
  soon as a write says the barrier is no longer open.

A kill loses at most the in-flight items and the unwritten results: their items are
still held by the dead lease, and go back to pending once it runs out.
"""

from __future__ import annotations

import math
from time import monotonic
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from flowstone import StorageError
from flowstone._core.barrier_store import AS_STORED
from flowstone._core.protocols import ScatterItemResult
from flowstone._core.records import Status

from ._engine import ScatterEngine
from ._errors import DuplicateScatterKeyError
from ._sources import ItemFeed
from ._summary import MAX_LISTED_FAILURES, error_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowstone._core.barrier_store import BarrierLease, BarrierStore
    from flowstone._core.protocols import BarrierState

    from ._progress import ScatterReporter
    from ._runner import ItemRunner
    from ._unstored_pages import UnstoredPage, UnstoredPages

__all__ = ["BarrierEngine", "ClaimFeed", "ResultRecorder"]

_FIRST_POLL = 0.01
_YIELD_EVERY = 256


class ClaimFeed(ItemFeed):
    """Pages of ``(index, item)`` claimed from a barrier for one lease.

    :param store: the barrier store
    :param barrier_id: the barrier
    :param lease: this process's lease
    :param limit: items per claim
    :param stay: keep watching until every item is terminal (else: leave once nothing
        is left to claim and the source is read)
    :param poll_interval: the longest wait between two looks while nothing is pending
    :param reap_interval: the least time between two recoveries of lapsed leases' items
    :param unstored: pages this process runs before storing them, taken before any claim
    """

    __slots__ = (
        "_barrier_id",
        "_claimed",
        "_last_reap",
        "_lease",
        "_limit",
        "_on_state",
        "_poll_interval",
        "_reap_interval",
        "_stay",
        "_wake",
        "keys",
        "barrier_done",
        "lost",
        "only_unstored",
        "stopping",
        "store",
        "unstored",
    )

    def __init__(
        self,
        store: BarrierStore,
        barrier_id: str,
        lease: BarrierLease,
        *,
        limit: int,
        stay: bool,
        poll_interval: float = 0.5,
        reap_interval: float = 0.5,
        unstored: UnstoredPages | None = None,
    ) -> None:
        super().__init__(None)  # pages come from claims (see refill)
        self.exhausted = False
        #: The barrier store claimed from.
        self.store = store
        self._barrier_id = barrier_id
        self._lease = lease
        self._limit = max(1, limit)
        self._stay = stay
        self._poll_interval = poll_interval
        self._reap_interval = reap_interval
        self._last_reap = -math.inf
        self._claimed = 0
        self._wake = anyio.Event()
        self._on_state: Callable[[BarrierState], None] | None = None
        #: The keys of the items claimed and not finished yet, by index.
        self.keys: dict[int, str] = {}
        #: Set to claim nothing more (the engine stops, or the lease was lost).
        self.stopping = False
        #: Set when the lease ran out (the store refused to renew it).
        self.lost = False
        #: Pages run before they are stored (the starting process's own items).
        self.unstored = unstored
        #: Set while no stored item can be pending (the barrier was empty and every page
        #: is run by this process before it is stored): the feed then waits for those
        #: pages instead of claiming. Cleared when pages are handed over.
        self.only_unstored = False
        #: Set when a write found every item of the barrier terminal.
        self.barrier_done = False

    @property
    def barrier_id(self) -> str:
        """The barrier claimed from."""
        return self._barrier_id

    @property
    def read(self) -> int:
        """Items claimed here so far."""
        return self._claimed

    def watch(self, on_state: Callable[[BarrierState], None]) -> None:
        """Pass every state of the barrier this feed reads to ``on_state``."""
        self._on_state = on_state

    def poke(self) -> None:
        """Look for pending items now (the source added some)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; a waiting refill ends the feed."""
        self.stopping = True
        self._wake.set()

    async def _take_page(self) -> None:
        """Make the next claim current (its positions are not one contiguous run)."""
        pairs = await self._claim_page()
        if pairs is None:
            self.exhausted = True
        else:
            self._claimed += len(pairs)
            self.current = iter(pairs)

    async def _claim_page(self) -> list[tuple[int, Any]] | None:
        store, barrier_id, lease = self.store, self._barrier_id, self._lease
        delay = _FIRST_POLL
        unstored = self.unstored
        while not self.stopping:
            if unstored is not None:
                page = unstored.take()
                if page is not None:
                    keys = self.keys
                    for index, key, _ in page.items:
                        keys[index] = key
                    return [(index, item) for index, _, item in page.items]
                if self.only_unstored:
                    if self.barrier_done:
                        return None
                    self._wake = wake = anyio.Event()  # a page is put, or the end
                    with anyio.move_on_after(self._poll_interval):
                        await wake.wait()
                    continue
            units = await store.claim(barrier_id, lease, self._limit)
            if units:
                keys = self.keys
                pairs: list[tuple[int, Any]] = []
                for unit in units:
                    for index, key, item in zip(unit.indexes, unit.keys, unit.items, strict=True):
                        keys[index] = key
                        pairs.append((index, item))
                return pairs
            state = await store.state(barrier_id)
            if self._on_state is not None:
                self._on_state(state)
            if state.exceeded or state.cancelled or state.done:
                return None
            # (A source is read only once its total is known: ask the store only then.)
            read = (
                not self._stay
                and state.total is not None
                and (await store.checkpoint(barrier_id)).exhausted
            )
            if await self._recover(force=read):
                delay = _FIRST_POLL
                continue
            if read:
                return None  # the source is read and nothing is pending: leave
            self._wake = wake = anyio.Event()
            with anyio.move_on_after(delay):
                await wake.wait()
            delay = min(delay * 2, self._poll_interval)
        return None

    async def _recover(self, *, force: bool) -> bool:
        now = monotonic()
        if not force and now - self._last_reap < self._reap_interval:
            return False
        self._last_reap = now
        return await self.store.recover(self._barrier_id, self._lease) > 0


class ResultRecorder:
    """Writes an engine's finished results to the barrier store in batches.

    :param store: the barrier store
    :param barrier_id: the barrier
    :param lease: the lease the results come under
    :param max_concurrent: the engine's workers (a batch is a third of them)
    :param flush_interval: seconds a result may wait before it is written
    :param on_state: takes the barrier's state after every write
    :param unstored: pages run before they were stored: their results are kept until the
        page is finished, then stored with it (a page the store refuses, for a duplicate
        key, drops the pages after it and raises from :meth:`run` or :meth:`flush`)
    """

    def __init__(
        self,
        store: BarrierStore,
        barrier_id: str,
        lease: BarrierLease,
        *,
        max_concurrent: int,
        flush_interval: float,
        on_state: Callable[[BarrierState], None],
        unstored: UnstoredPages | None = None,
    ) -> None:
        self._store = store
        self._barrier_id = barrier_id
        self._lease = lease
        self._flush_interval = flush_interval
        self._on_state = on_state
        self._flush_size = max(1, min(1000, max_concurrent // 3))
        self._max_waiting = max(1, max_concurrent)
        self._waiting: list[ScatterItemResult] = []
        self._first_waiting = 0.0
        self._urgent = False
        self._due = anyio.Event()
        self._written = anyio.Event()
        self._unstored = unstored
        self._storing = anyio.Lock()
        self._writing = anyio.Lock()
        #: Every result this recorder stored, while all of them came with the pages run
        #: before they were stored and each gathers back as it is (see ``AS_STORED``);
        #: ``None`` once one did not.
        self.kept: list[ScatterItemResult] | None = [] if unstored is not None else None
        if unstored is not None:
            unstored.on_ready(lambda: self._due.set())

    def keep(self, result: ScatterItemResult) -> bool:
        """Keep ``result`` with its page when the page is not stored yet (it is stored
        with the page); ``False``: it is of a stored item, :meth:`add` it."""
        unstored = self._unstored
        return unstored is not None and unstored.finish(result)

    async def add(self, result: ScatterItemResult) -> None:
        """Queue one result (kept with its page when that is not stored yet, see
        :meth:`keep`); wait while ``max_concurrent`` results are unwritten."""
        if self.keep(result):
            return
        while len(self._waiting) >= self._max_waiting:
            self._due.set()
            await self._written.wait()
        waiting = self._waiting
        if not waiting:
            self._first_waiting = monotonic()
            self._due.set()
        waiting.append(result)
        if result.status is not Status.SUCCEEDED:
            self._urgent = True
            self._due.set()
        elif len(waiting) >= self._flush_size:
            self._due.set()

    async def run(self) -> None:
        """Write batches as they fall due, until cancelled."""
        unstored = self._unstored
        while True:
            if unstored is not None and unstored.ready():
                await self._store_pages()
                continue
            if not self._waiting:
                self._due = due = anyio.Event()
                await due.wait()
                continue
            remaining = self._first_waiting + self._flush_interval - monotonic()
            if not self._urgent and len(self._waiting) < self._flush_size and remaining > 0:
                self._due = due = anyio.Event()
                with anyio.move_on_after(remaining):
                    await due.wait()
                continue
            await self.flush()

    async def flush(self) -> None:
        """Write every waiting result, and the finished unstored pages, now."""
        await self._store_pages()
        # One write at a time: a last flush waits for the one in progress, so the writer
        # is not cancelled with results it took and did not write.
        async with self._writing:
            batch, self._waiting = self._waiting, []
            self._urgent = False
            if not batch:
                return
            self.kept = None  # results of claimed items: gather from the store
            try:
                state = await self._record(batch)
            finally:
                written, self._written = self._written, anyio.Event()
                written.set()
        self._on_state(state)

    async def _store_pages(self) -> None:
        """Store the unstored pages that are ready, in source order."""
        unstored = self._unstored
        if unstored is None:
            return
        store, barrier_id = self._store, self._barrier_id
        async with self._storing:  # one at a time: the checkpoint only moves forwards
            while (page := unstored.pop_ready()) is not None:
                try:
                    if page.taken or page.finished:  # it ran (or it is the empty end)
                        state = await self._store_page(page)
                    else:  # handed over before it ran: anyone may claim it
                        self.kept = None
                        state = await store.add_items(barrier_id, page.items, page.checkpoint)
                except DuplicateScatterKeyError:
                    unstored.close()  # nothing after it may be stored
                    raise
                except BaseException:
                    # Not stored (a cancelled or failed write rolls back): the next flush
                    # stores it first. Storing it again is harmless (first result wins).
                    unstored.put_back(page)
                    raise
                unstored.stored()
                self._on_state(state)

    async def _store_page(self, page: UnstoredPage) -> BarrierState:
        store, barrier_id, lease = self._store, self._barrier_id, self._lease
        try:
            state = await store.add_finished(
                barrier_id, lease, page.items, page.results, page.checkpoint
            )
        except StorageError:
            self.kept = None
            # A result cannot be stored: the page goes in pending, then its results one by
            # one (that one as failed); a crash in between runs the page again.
            await store.add_items(barrier_id, page.items, page.checkpoint)
            return await self._record(page.results)
        kept = self.kept
        if kept is not None:
            if page.remaining or not all(r.value.__class__ in AS_STORED for r in page.results):
                self.kept = None
            else:
                kept.extend(page.results)
        return state

    async def _record(self, batch: list[ScatterItemResult]) -> BarrierState:
        store, barrier_id, lease = self._store, self._barrier_id, self._lease
        try:
            state = await store.record(barrier_id, lease, batch)
        except StorageError:
            # One of them cannot be stored: record them one by one, that one as failed.
            for result in batch:
                try:
                    state = await store.record(barrier_id, lease, [result])
                except StorageError as exc:
                    failed = ScatterItemResult(
                        result.key,
                        result.index,
                        Status.FAILED,
                        error=error_text(exc),
                        attempts=result.attempts,
                    )
                    state = await store.record(barrier_id, lease, [failed])
        return state


class BarrierEngine(ScatterEngine):
    """The scatter engine on a barrier store's claims (see the module documentation).

    :param feed: the claims
    :param runner: executes one item
    :param recorder: where the results go
    :param max_concurrent: items in flight at most (the number of workers)
    :param reporter: events and progress (``None``: silent)
    :param asset: the asset's name
    :param partition: the partition key
    :param run_id: the run's id
    :param attempt: the asset's attempt
    """

    def __init__(
        self,
        feed: ClaimFeed,
        runner: ItemRunner,
        recorder: ResultRecorder,
        *,
        max_concurrent: int,
        reporter: ScatterReporter | None = None,
        asset: str = "scatter",
        partition: str | None = None,
        run_id: str | None = None,
        attempt: int = 1,
    ) -> None:
        super().__init__(
            feed,
            runner,
            max_concurrent=max_concurrent,
            reporter=reporter,
            asset=asset,
            partition=partition,
            run_id=run_id,
            attempt=attempt,
        )
        #: The claims the workers pull from.
        self.claims = feed
        #: Where the results go.
        self.recorder = recorder
        self._allowed = None  # the store decides the threshold
        #: The barrier's latest state seen here.
        self.state: BarrierState | None = None
        feed.watch(self.observe)

    def observe(self, state: BarrierState) -> None:
        """Take the barrier's state; stop once it is no longer open."""
        self.state = state
        if state.exceeded or state.cancelled:
            self.halt()
        elif state.done:
            self.claims.barrier_done = True
            self.claims.poke()  # a waiting feed ends now

    def halt(self) -> None:
        """Stop: in-flight items are cancelled, nothing more is claimed."""
        self.claims.stop()
        self._stop()

    async def _item_worker(self) -> None:
        feed = self.claims
        keys = feed.keys
        runner = self._runner
        call = runner.call if runner.plain else None  # one call per item: no runner frames
        keep = self.recorder.keep
        add = self.recorder.add
        reporter = self._reporter
        per_item = reporter is not None and reporter.per_item
        failures = self._failures
        count = 0
        while True:
            page = feed.current
            for index, item in page:
                if self._stopped:
                    return
                key = keys.pop(index)
                if call is not None:
                    attempts = 1
                    try:
                        value = await call(key, item, None)
                        ok = True
                    except Exception as exc:
                        ok, value = False, exc
                else:
                    ok, value, attempts = await runner.run(key, item)
                if attempts > 1:
                    self._retried += 1
                if ok:
                    self._succeeded += 1
                    result = ScatterItemResult(key, index, Status.SUCCEEDED, value, None, attempts)
                else:
                    self._failed += 1
                    error = error_text(value)
                    if len(failures) < MAX_LISTED_FAILURES:
                        failures.append((key, error))
                    result = ScatterItemResult(key, index, Status.FAILED, None, error, attempts)
                if per_item:
                    assert reporter is not None
                    reporter.item(index, key, ok, attempts, None if ok else value)
                if not keep(result):
                    await add(result)
                count += 1
                if not count % _YIELD_EVERY:
                    await anyio.lowlevel.checkpoint()
            if not await feed.refill(page):
                return
