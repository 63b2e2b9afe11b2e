"""Scatters kept in a :class:`~flowstone.protocols.BarrierStore`: resumable, shareable.

:class:`BarrierScatterCoordinator` runs ``@scatter`` assets on the
:class:`~._barrier_engine.BarrierEngine` with each asset's barrier (one per run, asset and
partition) in the store it is given. The process that starts the scatter:

1. opens the barrier (or the stored one: a retried asset, a resumed run), reopening it
   when it had exceeded its threshold or was cancelled: failed items run again,
   succeeded ones keep their results;
2. reads the source from the barrier's checkpoint in pages. While no other worker is
   alive it runs each page of default-keyed items before storing it (items with keys of
   their own are stored first: only the store knows whether a key is taken), then stores the page with its results and
   the checkpoint after it in one step (its own items first: one write per item, see
   :mod:`._unstored_pages`); once another worker is alive it stores the pages it holds at
   once (the running ones held by itself) and each further page pending with the
   checkpoint, for anyone to claim;
3. meanwhile claims and runs stored items like any worker, renewing its lease, and stays
   until every item is terminal;
4. gathers the stored results in source order.

Other engines sharing the store (in this process or, with a shared store such as
``PostgresBarrierStore``, in others) join with :func:`work_on_barrier`. With the
in-memory store a scatter resumes within the process; with a database store it resumes
in any process.
"""

from __future__ import annotations

import json
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from flowstone import InvalidAssetError
from flowstone._core.barrier_store import SourceCheckpoint
from flowstone._core.protocols import ItemReader
from flowstone._core.records import Status

from ._barrier_engine import BarrierEngine, ClaimFeed, ResultRecorder
from ._errors import (
    BarrierCancelledError,
    BarrierLeaseLostError,
    ScatterFailureThresholdExceeded,
)
from ._gather import call_gather
from ._sources import open_feed, size_of
from ._summary import FIRST_ERRORS, MAX_LISTED_FAILURES, ScatterSummary
from ._unstored_pages import UnstoredPages

if TYPE_CHECKING:
    from flowstone._core.barrier_store import BarrierLease, BarrierStore
    from flowstone._core.protocols import BarrierState, ScatterItemResult

    from ._progress import ScatterReporter
    from ._runner import ItemRunner

__all__ = ["BarrierScatter", "barrier_id_of", "work_on_barrier"]

#: Seconds a process's claims outlive its last renewal (it renews every third of that).
DEFAULT_LEASE = 30.0
#: Seconds between two looks for other workers while a page read waits to run unstored.
_LOOK_FOR_WORKERS = 0.05
#: Seconds the head page may run unfinished while the pages are full before it is stored
#: as it stands (a slow item then holds up nothing after it).
_STALLED_PAGE = 0.5


def barrier_id_of(run_id: str, asset: str, partition: str | None) -> str:
    """The barrier id of a scatter asset's items in one run and partition:
    ``[run_id, asset, partition]`` as compact JSON (every coordinator's key)."""
    return json.dumps([run_id, asset, partition], ensure_ascii=False, separators=(",", ":"))


def _key_maker(key: Callable[[Any], Any] | None, asset: str) -> Callable[[Any, int], str]:
    if key is None:
        return lambda item, index: str(index)

    def make(item: Any, index: int) -> str:
        made = key(item)
        if made.__class__ is str:
            return str(made)
        if isinstance(made, int) and not isinstance(made, bool):
            return str(made)
        raise TypeError(
            f"asset {asset!r}: key= must return a string (or an int) for each item; it "
            f"returned {made!r} for the item at position {index}"
        )

    return make


class BarrierScatter:
    """One scatter run on a barrier store by the process that starts it.

    :param store: the barrier store
    :param barrier_id: the barrier
    :param runner: executes one item
    :param run_id: the run's id
    :param asset: the asset's name
    :param partition: the partition key
    :param tolerated_failure: a count or fraction of items that may fail
    :param max_concurrent: items in flight here at most
    :param key: ``key(item)`` makes an item's key (default: its position)
    :param page_size: items read from the source (and stored) at a time; claims, and
        pages run before they are stored, hold at most ``2 * max_concurrent`` items
    :param gather: a ``gather=`` function (``None``: the list of results in source order)
    :param reporter: events and progress (``None``: silent)
    :param lease: seconds this process's claims outlive its last renewal
    :param flush_interval: seconds a finished result may wait before it is written
    :param poll_interval: the longest wait between looks while nothing is pending
    :param attempt: the asset's attempt
    :param recipe: what the stored items and results are valid for (see
        ``BarrierStore.open_barrier``); a barrier stored with another is started over
    :param metadata: the asset's metadata (the store's storage options for its results)
    """

    def __init__(
        self,
        store: BarrierStore,
        barrier_id: str,
        runner: ItemRunner,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        tolerated_failure: int | float,
        max_concurrent: int,
        key: Callable[[Any], Any] | None = None,
        page_size: int = 1000,
        gather: Callable[[Any], Any] | None = None,
        reporter: ScatterReporter | None = None,
        lease: float = DEFAULT_LEASE,
        flush_interval: float = 0.05,
        poll_interval: float = 0.5,
        attempt: int = 1,
        recipe: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self._recipe = recipe
        self._metadata = metadata
        self.barrier_id = barrier_id
        self._runner = runner
        self._run_id = run_id
        self._asset = asset
        self._partition = partition
        self._tolerated = tolerated_failure
        self._max_concurrent = max_concurrent
        self._key = _key_maker(key, asset)
        self._keyed = key is not None
        self._page_size = page_size
        # Items claimed (and pages run before they are stored) at a time: small enough
        # that a failure among the items run before they are stored is decided at most a
        # page later.
        self._claim_size = max(1, min(page_size, max_concurrent * 2))
        self._gather = gather
        self._reporter = reporter
        self._lease = lease
        self._flush_interval = flush_interval
        self._poll_interval = poll_interval
        self._attempt = attempt
        self._fatal: BaseException | None = None
        self._started = 0.0
        self._state: BarrierState | None = None
        self._failures: list[tuple[str, str]] = []
        self._alone_until = -math.inf
        self._kept: list[ScatterItemResult] | None = None

    def summary(self) -> ScatterSummary:
        """The barrier's counts (final once :meth:`run` returned or raised)."""
        state = self._state
        if state is None:
            return ScatterSummary(total=0, succeeded=0, failed=0)
        return ScatterSummary(
            total=state.total if state.total is not None else state.finished,
            succeeded=state.succeeded,
            failed=state.failed,
            retried=state.retried,
            failures=tuple(self._failures),
            duration=perf_counter() - self._started,
        )

    async def run(self, source: Any) -> Any:
        """Store the items of ``source``, run them with whoever joins, and gather.

        :raises ScatterFailureThresholdExceeded: more items failed than tolerated
        :raises BarrierCancelledError: the barrier was cancelled
        :raises DuplicateScatterKeyError: two items have the same key
        """
        self._started = perf_counter()
        store, barrier_id = self.store, self.barrier_id
        state = await store.open_barrier(
            barrier_id,
            run_id=self._run_id,
            asset=self._asset,
            partition=self._partition,
            tolerated_failure=self._tolerated,
            total=size_of(source),  # known up front: a fraction is decided from the start
            recipe=self._recipe,
            metadata=self._metadata,
        )
        if state.exceeded or state.cancelled:
            state = await store.reopen(barrier_id)
        checkpoint = await store.checkpoint(barrier_id)
        fresh = checkpoint.read == 0 and state.finished == 0
        lease = await store.join(lease=self._lease)
        # Pages run before they are stored only with default keys: a key of the
        # source's own could be stored already, which only storing the page tells.
        unstored = UnstoredPages() if not checkpoint.exhausted and not self._keyed else None
        feed = ClaimFeed(
            store,
            barrier_id,
            lease,
            limit=self._claim_size,
            stay=True,
            poll_interval=self._poll_interval,
            unstored=unstored,
        )
        feed.only_unstored = fresh and unstored is not None
        try:
            await self._work(feed, lease, source, checkpoint)
        finally:
            if unstored is not None:
                unstored.close()
            with anyio.CancelScope(shield=True):
                await store.leave(lease)
        if self._fatal is not None:
            raise self._fatal
        return await self._finish(lost=feed.lost, kept=self._kept if fresh else None)

    async def _work(
        self, feed: ClaimFeed, lease: BarrierLease, source: Any, checkpoint: SourceCheckpoint
    ) -> None:
        engine = _engine(
            self.store,
            self.barrier_id,
            lease,
            feed,
            self._runner,
            max_concurrent=self._max_concurrent,
            flush_interval=self._flush_interval,
            reporter=self._reporter,
            asset=self._asset,
            partition=self._partition,
            run_id=self._run_id,
            attempt=self._attempt,
        )
        async with anyio.create_task_group() as tg:

            async def read_source() -> None:
                try:
                    await self._read_source(source, checkpoint, feed, lease)
                except Exception as exc:  # a duplicate key, a failing reader
                    self._fatal = exc
                    tg.cancel_scope.cancel()

            if not checkpoint.exhausted:
                tg.start_soon(read_source)
            try:
                await _run_engine(engine, lease)
            except Exception as exc:  # a page the store refused, a duplicate key found late
                self._fatal = exc
            self._kept = engine.recorder.kept
            tg.cancel_scope.cancel()  # done, stopped or fenced off: read no further

    async def _read_source(
        self, source: Any, checkpoint: SourceCheckpoint, feed: ClaimFeed, lease: BarrierLease
    ) -> None:
        """Store the source's items from the checkpoint on, a page at a time."""
        # A reader's pages (each stored with its cursor) and pages stored before they run
        # go in as the asset's pages; pages run before they are stored are smaller, so a
        # failure among them is decided at most that much later.
        key = self._key
        reader = _is_reader(source)
        size = self._claim_size if feed.unstored is not None and not reader else self._page_size

        async def add_items(items: list[tuple[int, str, Any]], at: SourceCheckpoint) -> None:
            await self._add_page(items, at, feed, lease)

        index = checkpoint.read
        if reader:
            cursor = checkpoint.cursor
            while True:
                page = await source.read_page(cursor, size)
                cursor = page.cursor
                items = [
                    (index + n, key(item, index + n), item) for n, item in enumerate(page.items)
                ]
                index += len(items)
                await add_items(items, SourceCheckpoint(index, cursor, exhausted=cursor is None))
                if cursor is None:
                    return
        pairs = await open_feed(source, page_size=size)
        chunk: list[tuple[int, str, Any]] = []
        try:
            while True:
                page = pairs.current
                for position, item in page:
                    if position < index:
                        continue  # stored before the checkpoint
                    chunk.append((position, key(item, position), item))
                    if len(chunk) >= size:
                        await add_items(chunk, SourceCheckpoint(position + 1))
                        chunk = []
                if not await pairs.refill(page):
                    break
        finally:
            await pairs.aclose()
        end = max(index, pairs.read)
        await add_items(chunk, SourceCheckpoint(end, exhausted=True))

    async def _add_page(
        self,
        items: list[tuple[int, str, Any]],
        checkpoint: SourceCheckpoint,
        feed: ClaimFeed,
        lease: BarrierLease,
    ) -> None:
        """Hand a page to this process's workers unstored while no other worker is alive
        (looking again while it waits for room), else hand the unstored pages over and
        store it pending, after them (so the checkpoint stays in order)."""
        unstored = feed.unstored
        if unstored is not None:
            await self.store.check_items(self.barrier_id, items)  # before any of them runs
            while await self._alone(lease):
                if await unstored.put(items, checkpoint, within=_LOOK_FOR_WORKERS):
                    feed.poke()
                    return
                unstored.unstick(after=_STALLED_PAGE)
            feed.only_unstored = False  # stored pages may be pending from now on
            await unstored.hand_over()
        await self.store.add_items(self.barrier_id, items, checkpoint)
        feed.poke()

    async def _alone(self, lease: BarrierLease) -> bool:
        """Whether no other worker is alive, asking the store at most every
        ``_LOOK_FOR_WORKERS`` seconds (a worker that joins gets pages that much later)."""
        if anyio.current_time() < self._alone_until:
            return True
        if await self.store.has_other_workers(lease):
            return False
        self._alone_until = anyio.current_time() + _LOOK_FOR_WORKERS
        return True

    async def _finish(self, *, lost: bool, kept: list[ScatterItemResult] | None) -> Any:
        """Gather the stored results: from ``kept`` when they are every result of the
        barrier (this process stored them all, each gathers back as it is), else from the
        store."""
        store, barrier_id = self.store, self.barrier_id
        self._state = state = await store.state(barrier_id)
        if lost and not (state.done or state.exceeded or state.cancelled):
            raise BarrierLeaseLostError(self._asset, self._partition)
        results: list[ScatterItemResult]
        if kept is not None and state.done and len(kept) == state.finished:
            results = sorted(kept, key=_by_index)
        else:
            results = [r async for r in store.gather(barrier_id)]
        self._failures = [
            (r.key, r.error or "") for r in results if r.status is not Status.SUCCEEDED
        ][:MAX_LISTED_FAILURES]
        if state.cancelled:
            raise BarrierCancelledError(self._asset, self._partition, state.reason)
        if state.exceeded:
            raise ScatterFailureThresholdExceeded(
                self._asset,
                self._partition,
                state.total if state.total is not None else state.finished,
                state.succeeded,
                state.failed,
                tuple(self._failures[:FIRST_ERRORS]),
                run_id=self._run_id,
                attempt=self._attempt,
                tolerated=self._tolerated,
            )
        values = [(r.key, r.value) for r in results if r.status is Status.SUCCEEDED]
        if self._gather is None:
            return [value for _, value in values]
        return await call_gather(self._gather, _Pairs(values))


def _by_index(result: ScatterItemResult) -> int:
    return result.index


def _is_reader(source: Any) -> bool:
    """Whether ``source`` is read as an :class:`~flowstone.protocols.ItemReader` (with a
    cursor a resumed reading starts from)."""
    return isinstance(source, ItemReader) and not isinstance(source, Iterable | AsyncIterable)


def _engine(
    store: BarrierStore,
    barrier_id: str,
    lease: BarrierLease,
    feed: ClaimFeed,
    runner: ItemRunner,
    *,
    max_concurrent: int,
    flush_interval: float,
    reporter: ScatterReporter | None,
    asset: str,
    partition: str | None,
    run_id: str | None,
    attempt: int,
) -> BarrierEngine:
    engine: BarrierEngine | None = None

    def observe(state: BarrierState) -> None:
        if engine is not None:
            engine.observe(state)

    recorder = ResultRecorder(
        store,
        barrier_id,
        lease,
        max_concurrent=max_concurrent,
        flush_interval=flush_interval,
        on_state=observe,
        unstored=feed.unstored,
    )
    engine = BarrierEngine(
        feed,
        runner,
        recorder,
        max_concurrent=max_concurrent,
        reporter=reporter,
        asset=asset,
        partition=partition,
        run_id=run_id,
        attempt=attempt,
    )
    return engine


async def _run_engine(engine: BarrierEngine, lease: BarrierLease) -> None:
    """Run ``engine`` with its result writer and lease renewal beside it."""
    recorder = engine.recorder
    store = engine.claims.store
    errors: list[Exception] = []

    async def guarded(work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except Exception as exc:
            # The store refused a write (a duplicate key found late, a full disk): stop,
            # and raise it as it is.
            errors.append(exc)
            engine.halt()

    async with anyio.create_task_group() as helpers:
        helpers.start_soon(guarded, recorder.run)
        helpers.start_soon(guarded, lambda: _renew(store, lease, engine))
        try:
            await engine.run()
        finally:
            with anyio.CancelScope(shield=True):
                await guarded(recorder.flush)
            helpers.cancel_scope.cancel()
    if errors:
        raise errors[0]


async def _renew(store: BarrierStore, lease: BarrierLease, engine: BarrierEngine) -> None:
    """Renew the lease every third of it, and look at the barrier's state then (a barrier
    cancelled while every item here waits is noticed without a write)."""
    while True:
        await anyio.sleep(lease.seconds / 3)
        if not await store.renew(lease):
            engine.claims.lost = True
            engine.halt()  # fenced off: others may be running its items
            return
        engine.observe(await store.state(engine.claims.barrier_id))


async def work_on_barrier(
    store: BarrierStore,
    barrier_id: str,
    runner: ItemRunner,
    *,
    max_concurrent: int,
    lease: float = DEFAULT_LEASE,
    flush_interval: float = 0.05,
    poll_interval: float = 0.5,
    reporter: ScatterReporter | None = None,
) -> ScatterSummary:
    """Join a barrier as a worker: claim and run its items until nothing is left to
    claim once the source is read (or the barrier closes), then leave.

    :return: what this worker did (its own counts)
    """
    joined = await store.join(lease=lease)
    feed = ClaimFeed(
        store,
        barrier_id,
        joined,
        limit=max_concurrent * 2,
        stay=False,
        poll_interval=poll_interval,
    )
    engine = _engine(
        store,
        barrier_id,
        joined,
        feed,
        runner,
        max_concurrent=max_concurrent,
        flush_interval=flush_interval,
        reporter=reporter,
        asset="scatter",
        partition=None,
        run_id=None,
        attempt=1,
    )
    try:
        await _run_engine(engine, joined)
    finally:
        with anyio.CancelScope(shield=True):
            await store.leave(joined)
    return engine.summary()


class _Pairs(AsyncIterator[tuple[str, Any]]):
    __slots__ = ("_iterator",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self._iterator = iter(pairs)

    async def __anext__(self) -> tuple[str, Any]:
        try:
            return next(self._iterator)
        except StopIteration:
            raise StopAsyncIteration from None


def refuse_batches(asset: str, batch: object) -> None:
    """A barrier store keeps items one by one: ``batch=`` is not supported on it.

    :raises InvalidAssetError: naming the asset
    """
    if batch is not None:
        raise InvalidAssetError(
            asset,
            "batch= is not supported by BarrierScatterCoordinator (a barrier store keeps "
            "items one by one); drop batch= or use the in-process or PostgreSQL coordinator",
        )
