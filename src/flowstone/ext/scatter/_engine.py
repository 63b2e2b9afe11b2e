"""The scatter engine: a fixed pool of workers pulling items from one shared feed.

Measured on this design's target workloads, ``max_concurrent`` long-lived worker tasks
pulling from one shared iterator cost a fraction of a task per item behind a semaphore
(no task, no semaphore, no per-item event), so that is the shape here. Per item, a worker
pulls the next ``(index, item)`` without awaiting, makes its key (only when something
needs it), calls the function through the :class:`~._runner.ItemRunner`, and records the
outcome in plain counters. Everything else is amortised: progress is reported by a ticker,
a worker yields to the loop every 256 items even if its items never do, and the threshold
is checked only when an item fails (or when the total becomes known).

Stopping is structured: exceeding the failure threshold (or a fatal error, such as a
duplicate key or a failing gather function) cancels the workers' task group, so in-flight
items are cancelled and no new one starts; cancelling the caller cancels everything, and
no task outlives :meth:`ScatterEngine.run`.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._batch import Batch, Batcher, BatchInfo, Pair, precompute_batches
from ._errors import DuplicateScatterKeyError, ScatterFailureThresholdExceeded
from ._gather import OrderedStream, SlotResults, call_gather, window_for
from ._progress import PROGRESS_INTERVAL, ScatterReporter
from ._summary import (
    FIRST_ERRORS,
    MAX_LISTED_FAILURES,
    ScatterSummary,
    allowed_failures,
    error_text,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from anyio.abc import TaskGroup

    from ._runner import ItemRunner, PositionCall
    from ._sources import ItemFeed

__all__ = ["ScatterEngine"]

_YIELD_EVERY = 256  # items a worker runs before it lets other tasks in (a power of two)


class _StreamingBatches:
    """Hands out batches built while the source is read (not precomputed)."""

    __slots__ = ("_batcher", "_count", "_done", "_feed", "_lock", "_pulled", "_ready", "_stream")

    def __init__(self, feed: ItemFeed, batch: Batch, stream: OrderedStream | None) -> None:
        self._feed = feed
        self._batcher = Batcher(batch)
        self._stream = stream
        self._lock = anyio.Lock()
        self._ready: deque[list[Pair]] = deque()
        self._pulled = 0
        self._count = 0
        self._done = False

    async def next(self) -> tuple[int, list[Pair]] | None:
        async with self._lock:
            feed, batcher, stream, ready = self._feed, self._batcher, self._stream, self._ready
            while not ready:
                if self._done:
                    return None
                if stream is not None and self._pulled >= stream.limit:
                    # The reorder window is full: release the batch holding the oldest
                    # pending item rather than read further, or wait for the gather.
                    oldest = batcher.flush_oldest()
                    if oldest is not None:
                        ready.append(oldest)
                        break
                    await stream.wait_for_room(self._pulled)
                    continue
                page = feed.current
                for index, item in page:
                    self._pulled = index + 1
                    completed = batcher.add(index, item)
                    if completed:
                        ready.extend(completed)
                        break
                    if stream is not None and self._pulled >= stream.limit:
                        break
                else:
                    if not await feed.refill(page):
                        ready.extend(batcher.flush_all())
                        self._done = True
            pairs = ready.popleft()
            index = self._count
            self._count += 1
            return index, pairs


class ScatterEngine:
    """Runs every item of one scatter and gathers the results.

    :param feed: the source (see :func:`~._sources.open_feed`)
    :param runner: executes one item or batch
    :param max_concurrent: items (or batches) in flight at most; also the number of workers
    :param key: ``key(item)`` returns the item's key (default: its position as a string)
    :param tolerated_failure: a count (``int``) or fraction (``float``) of items that may fail
    :param batch: batching options (``None``: one item per call)
    :param batch_input: the evaluated ``batch_input`` value
    :param gather: a ``gather=`` function (``None``: the list of results in source order)
    :param reporter: events and progress (``None``: silent)
    :param asset: the asset's name, for errors and events
    :param partition: the partition key
    :param run_id: the run's id
    :param attempt: the asset's attempt, for errors
    """

    def __init__(
        self,
        feed: ItemFeed,
        runner: ItemRunner,
        *,
        max_concurrent: int,
        key: Callable[[Any], Any] | None = None,
        tolerated_failure: int | float = 0,
        batch: Batch | None = None,
        batch_input: Any = None,
        gather: Callable[[Any], Any] | None = None,
        reporter: ScatterReporter | None = None,
        asset: str = "scatter_map",
        partition: str | None = None,
        run_id: str | None = None,
        attempt: int = 1,
    ) -> None:
        self._feed = feed
        self._runner = runner
        self._max_concurrent = max_concurrent
        self._keyfn = key
        self._tolerated = tolerated_failure
        self._batch = batch
        self._batch_input = batch_input
        self._gather = gather
        self._reporter = reporter
        self._asset = asset
        self._partition = partition
        self._run_id = run_id
        self._attempt = attempt

        self._succeeded = 0
        self._failed = 0
        self._retried = 0
        self._failures: list[tuple[str, str]] = []
        self._allowed: int | None = allowed_failures(tolerated_failure, None)
        self._exceeded = False
        self._stopped = False
        self._fatal: BaseException | None = None
        self._started = 0.0
        self._ended: float | None = None
        self._seen_keys: set[str] | None = set() if key is not None else None
        self._stream: OrderedStream | None = None
        self._slots: SlotResults | None = None
        self._gathered: Any = None
        self._tg: TaskGroup | None = None
        self._workers_scope: anyio.CancelScope | None = None
        self._batches: Iterator[tuple[int, list[Pair]]] | None = None
        self._streaming_batches: _StreamingBatches | None = None
        self._batch_count: int | None = None

    # -- results -----------------------------------------------------------------------

    def summary(self) -> ScatterSummary:
        """The counts so far (final once :meth:`run` returned or raised)."""
        feed = self._feed
        total = feed.total if feed.total is not None else feed.read
        end = self._ended if self._ended is not None else perf_counter()
        return ScatterSummary(
            total=total,
            succeeded=self._succeeded,
            failed=self._failed,
            retried=self._retried,
            failures=tuple(self._failures),
            duration=end - self._started if self._started else 0.0,
        )

    # -- running ---------------------------------------------------------------------

    async def run(self) -> Any:
        """Run every item; return the gathered value.

        :raises ScatterFailureThresholdExceeded: more items failed than tolerated
        :raises DuplicateScatterKeyError: two items have the same key
        """
        self._started = perf_counter()
        feed = self._feed
        reporter = self._reporter
        batch = self._batch
        unit_size = batch.size_hint if batch is not None else 1
        workers = self._max_concurrent
        if self._gather is not None:
            self._stream = OrderedStream(window_for(self._max_concurrent, unit_size))
        status = "failed"
        try:
            if batch is not None:
                if feed.exhausted or batch.batch_fn is not None:
                    batches = precompute_batches(await feed.drain(), batch)
                    self._batch_count = len(batches)
                    self._batches = enumerate(batches)
                    workers = min(workers, len(batches))
                else:
                    self._streaming_batches = _StreamingBatches(feed, batch, self._stream)
            elif feed.exhausted and feed.total is not None:
                workers = min(workers, feed.total)
            if self._stream is None:
                known = feed.exhausted and feed.total is not None
                self._slots = SlotResults(feed.total if known else None)
            feed.on_total(self._on_total)
            if reporter is not None:
                reporter.started(feed.total, self._max_concurrent, batch is not None)
            worker = self._batch_worker if batch is not None else self._item_worker
            async with anyio.create_task_group() as tg:
                self._tg = tg
                ticker = anyio.CancelScope()
                if reporter is not None and reporter.active:
                    tg.start_soon(self._ticker, ticker)
                if self._stream is not None:
                    tg.start_soon(self._gather_task)
                with anyio.CancelScope() as self._workers_scope:
                    async with anyio.create_task_group() as pool:
                        for _ in range(workers):
                            pool.start_soon(self._guard, worker)
                ticker.cancel()
                if self._stopped:
                    tg.cancel_scope.cancel()  # the gather's value no longer matters
                elif self._stream is not None:
                    self._stream.close(feed.read)
            self._ended = perf_counter()
            if self._fatal is not None:
                raise self._fatal
            if self._exceeded:
                raise self._threshold_error()
            status = "succeeded"
        except anyio.get_cancelled_exc_class():
            status = "cancelled"
            raise
        finally:
            if self._ended is None:
                self._ended = perf_counter()
            with anyio.CancelScope(shield=True):
                await feed.aclose()
            if reporter is not None:
                summary = self.summary()
                if reporter.active:
                    reporter.progress(
                        summary.succeeded + summary.failed, feed.total, summary.failed
                    )
                reporter.finished(status, summary)
        if self._stream is not None:
            return self._gathered
        assert self._slots is not None
        return self._slots.result()

    def _threshold_error(self) -> ScatterFailureThresholdExceeded:
        summary = self.summary()
        return ScatterFailureThresholdExceeded(
            self._asset,
            self._partition,
            summary.total,
            summary.succeeded,
            summary.failed,
            summary.failures[:FIRST_ERRORS],
            run_id=self._run_id,
            attempt=self._attempt,
            tolerated=self._tolerated,
        )

    # -- stopping ----------------------------------------------------------------------

    def _stop(self) -> None:
        self._stopped = True
        if self._workers_scope is not None:
            self._workers_scope.cancel()

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
        self._stopped = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _on_total(self, total: int) -> None:
        self._allowed = allowed = allowed_failures(self._tolerated, total)
        if allowed is not None and self._failed > allowed and not self._exceeded:
            self._exceeded = True
            self._stop()

    async def _guard(self, body: Callable[[], Any]) -> None:
        try:
            await body()
        except Exception as exc:
            self._fail(exc)

    async def _ticker(self, scope: anyio.CancelScope) -> None:
        reporter = self._reporter
        assert reporter is not None
        with scope:
            while True:
                await anyio.sleep(PROGRESS_INTERVAL)
                reporter.progress(self._succeeded + self._failed, self._feed.total, self._failed)

    async def _gather_task(self) -> None:
        stream = self._stream
        assert stream is not None
        try:
            self._gathered = await call_gather(self._gather, stream)
        except Exception as exc:
            self._fail(exc)
            return
        stream.abandon()

    # -- outcomes ----------------------------------------------------------------------

    def _key_of(self, item: Any, index: int) -> str:
        assert self._keyfn is not None and self._seen_keys is not None
        key = self._keyfn(item)
        if key.__class__ is not str:
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)
            else:
                raise TypeError(
                    f"asset {self._asset!r}: key= must return a string (or an int) for each "
                    f"item; it returned {key!r} for the item at position {index}"
                )
        seen = self._seen_keys
        if key in seen:
            raise DuplicateScatterKeyError(self._asset, key, index, self._partition)
        seen.add(key)
        return key

    def _record_failure(self, index: int, key: str, error: BaseException, attempts: int) -> None:
        self._failed += 1
        if attempts > 1:
            self._retried += 1
        if len(self._failures) < MAX_LISTED_FAILURES:
            self._failures.append((key, error_text(error)))
        if self._stream is not None:
            self._stream.skip(index)
        reporter = self._reporter
        if reporter is not None and reporter.per_item:
            reporter.item(index, key, False, attempts, error)
        allowed = self._allowed
        if allowed is not None and self._failed > allowed and not self._exceeded:
            self._exceeded = True
            self._stop()

    def _record_success(self, index: int, key: str, value: Any, attempts: int) -> None:
        # The general path (the item worker inlines the common case).
        self._succeeded += 1
        if attempts > 1:
            self._retried += 1
        if self._stream is not None:
            self._stream.put(index, key, value)
        else:
            assert self._slots is not None
            self._slots.put(index, value)
        reporter = self._reporter
        if reporter is not None and reporter.per_item:
            reporter.item(index, key, True, attempts, None)

    # -- workers -----------------------------------------------------------------------

    async def _item_worker(self) -> None:
        feed = self._feed
        runner = self._runner
        call = runner.call
        plain = runner.plain
        keyfn = self._keyfn
        stream = self._stream
        reporter = self._reporter
        per_item = reporter is not None and reporter.per_item
        fast = plain and not per_item
        if fast and keyfn is None and stream is None and runner.by_position is not None:
            await self._position_worker(runner.by_position)
            return
        make_key = keyfn is None and (
            runner.needs_key or not plain or stream is not None or per_item
        )
        stream_put = stream.put if stream is not None else None
        slots = self._slots
        slot_list = slots.slots if slots is not None else None
        pairs_append = slots.pairs.append if slots is not None else None
        checkpoint = anyio.lowlevel.checkpoint
        key = ""
        count = 0
        while True:
            page = feed.current
            for index, item in page:
                if stream is not None and index >= stream.limit:
                    await stream.wait_for_room(index)
                if self._stopped:
                    return
                if keyfn is not None:
                    key = self._key_of(item, index)
                elif make_key:
                    key = str(index)
                if fast:
                    try:
                        value = await call(key, item, None)
                    except Exception as exc:
                        self._record_failure(
                            index, key if keyfn or make_key else str(index), exc, 1
                        )
                    else:
                        self._succeeded += 1
                        if stream_put is not None:
                            stream_put(index, key, value)
                        elif slot_list is not None:
                            slot_list[index] = value
                        else:
                            pairs_append((index, value))  # type: ignore[misc]  # set when slots is
                elif plain:
                    try:
                        value = await call(key, item, None)
                    except Exception as exc:
                        self._record_failure(
                            index, key if keyfn or make_key else str(index), exc, 1
                        )
                    else:
                        self._record_success(index, key, value, 1)
                else:
                    ok, value, attempts = await runner.run(key, item)
                    if ok:
                        self._record_success(index, key, value, attempts)
                    else:
                        self._record_failure(index, key, value, attempts)
                count += 1
                if not count & (_YIELD_EVERY - 1):
                    await checkpoint()
            if not await feed.refill(page):
                return

    async def _position_worker(self, call: PositionCall) -> None:
        """The item worker when an item is one call of ``call`` with its position for its
        key, and its result goes to the result slots (no ``key=``, ``gather=``, retries,
        timeout, rate limit or per-item events): the common case, with nothing else to
        check per item."""
        feed = self._feed
        slots = self._slots
        assert slots is not None
        slot_list = slots.slots
        pairs_append = slots.pairs.append
        checkpoint = anyio.lowlevel.checkpoint
        count = 0
        while True:
            page = feed.current
            for index, item in page:
                if self._stopped:
                    return
                try:
                    value = await call(index, item, None)
                except Exception as exc:
                    self._record_failure(index, str(index), exc, 1)
                else:
                    self._succeeded += 1
                    if slot_list is not None:
                        slot_list[index] = value
                    else:
                        pairs_append((index, value))
                count += 1
                if not count & (_YIELD_EVERY - 1):
                    await checkpoint()
            if not await feed.refill(page):
                return

    async def _next_batch(self) -> tuple[int, list[Pair]] | None:
        if self._batches is not None:
            return next(self._batches, None)
        assert self._streaming_batches is not None
        return await self._streaming_batches.next()

    async def _batch_worker(self) -> None:
        batch = self._batch
        assert batch is not None
        runner = self._runner
        keyfn = self._keyfn
        collect = batch.collect_errors
        while not self._stopped:
            unit = await self._next_batch()
            if unit is None or self._stopped:
                return
            batch_index, pairs = unit
            if keyfn is not None:
                keys = [self._key_of(item, index) for index, item in pairs]
            else:
                keys = [str(index) for index, _ in pairs]
            info = BatchInfo(batch_index, self._batch_count, self._batch_input)
            outcomes = await runner.run_batch(
                keys, [item for _, item in pairs], info, collect_errors=collect
            )
            for (index, _), key, (ok, value, attempts) in zip(pairs, keys, outcomes, strict=True):
                if ok:
                    self._record_success(index, key, value, attempts)
                else:
                    self._record_failure(index, key, value, attempts)
            await anyio.lowlevel.checkpoint()
