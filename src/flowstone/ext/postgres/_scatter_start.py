"""One execution of a durable scatter asset by the process that starts (or resumes) it.

:class:`StarterRun` opens (or continues) the asset's barrier, enumerates the source into
it while running items here, stays until every item is terminal, applies the failure
threshold and gathers the results, reading them back from the rows (or from memory when
this process ran every item and kept its results).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from flowstone import ExecutionError, StorageError
from flowstone._core.barrier_store import recipe_of
from flowstone.ext.scatter import (
    FIRST_ERRORS,
    MAX_LISTED_FAILURES,
    BarrierCancelledError,
    ItemRunner,
    ScatterFailureThresholdExceeded,
    ScatterReporter,
    ScatterSummary,
    barrier_id_of,
    call_gather,
    dependency_values,
    invocation_call,
)

from ._barrier_executor import BarrierExecutor
from ._barrier_rows import BarrierInit, BarrierRow, Counts
from ._errors import describe
from ._rows import where_names
from ._scatter_codec import Unstorable, decode, decode_results
from ._scatter_source import Enumerator

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg

    from flowstone.ext.scatter import ScatterSpec
    from flowstone.protocols import Invocation

    from ._barrier_rows import Checkpoint
    from ._barrier_statements import BarrierStatements
    from ._scatter import PostgresScatterCoordinator
    from ._scatter_session import WorkerSession

__all__ = [
    "BarrierCancelledError",
    "ScatterBarrierFailedError",
    "StarterRun",
    "barrier_key",
    "evaluate_batch_input",
    "recipe_of",
]

_log = logging.getLogger("flowstone.postgres")

#: The key of a scatter asset's barrier (the one every coordinator uses).
barrier_key = barrier_id_of

_PAGE = 1000
_GATHER_PAGE = 5000


class ScatterBarrierFailedError(ExecutionError):
    """The durable scatter's barrier ended in a fatal error (for example in enumeration).

    Executing the asset again continues it: its succeeded items are kept.
    """

    def __init__(self, asset: str, partition: str | None, reason: str | None) -> None:
        self.asset = asset
        self.partition = partition
        self.reason = reason
        super().__init__(
            f"{where_names(asset, partition)}: the scatter failed: {reason or 'unknown error'}"
        )


async def evaluate_batch_input(value: Any, deps: Mapping[str, Any]) -> Any:
    """A ``Batch(batch_input=...)`` value: called with the dependency values when callable."""
    if callable(value):
        value = value(deps)
        if inspect.isawaitable(value):
            value = await value
    return value


class _Successes(AsyncIterator[tuple[str, Any]]):
    """``(key, result)`` of the succeeded items in source order, a page at a time: what a
    ``gather=`` function receives (memory stays at one page)."""

    def __init__(
        self, ops: BarrierStatements, barrier_id: int, allow_pickle: bool, where: str
    ) -> None:
        self._ops = ops
        self._id = barrier_id
        self._allow_pickle = allow_pickle
        self._where = where
        self._page: list[asyncpg.Record] = []
        self._after = -1
        self._done = False

    async def __anext__(self) -> tuple[str, Any]:
        while True:
            if not self._page:
                if self._done:
                    raise StopAsyncIteration
                page = await self._ops.results_page(self._id, self._after, _PAGE)
                if len(page) < _PAGE:
                    self._done = True
                if not page:
                    raise StopAsyncIteration
                self._after = page[-1]["idx"]
                self._page = [r for r in reversed(page) if r["status"] == "succeeded"]
                continue
            record = self._page.pop()
            key = record["key"] if record["key"] is not None else str(record["idx"])
            try:
                value = decode(
                    record["result"], record["result_raw"], allow_pickle=self._allow_pickle
                )
            except Unstorable as exc:
                raise StorageError(
                    f"{self._where}: cannot load the result of item {key!r}: {exc}"
                ) from None
            return key, value


async def _all_successes(
    ops: BarrierStatements, barrier_id: int, allow_pickle: bool, where: str
) -> list[Any]:
    """The results of the succeeded items in source order, as one list.

    A page whose results are all JSON in the ``jsonb`` column is decoded with one parse.
    """
    values: list[Any] = []
    after = -1
    while True:
        page = await ops.results_page(barrier_id, after, _GATHER_PAGE)
        if not page:
            return values
        after = page[-1]["idx"]
        values.extend(decode_results(page, allow_pickle=allow_pickle, where=where))
        if len(page) < _GATHER_PAGE:
            return values


class StarterRun:
    """One execution of a scatter asset by the process that starts (or resumes) it."""

    def __init__(
        self, coordinator: PostgresScatterCoordinator, invocation: Invocation, spec: ScatterSpec
    ) -> None:
        self.coordinator = coordinator
        self.ops = coordinator.ops
        self.invocation = invocation
        self.spec = spec
        context = invocation.context
        self.asset = context.asset
        self.partition = context.partition
        self.run_id = invocation.run.run_id
        self.where = where_names(self.asset, self.partition)
        self.allow_pickle = coordinator.allow_pickle
        self.counts: Counts | None = None
        self.barrier_id: int | None = None
        self.fatal: BaseException | None = None
        #: The results in source order when this process ran every item and kept them.
        self.kept: list[Any] | None = None

    async def run(self) -> Any:
        invocation = self.invocation
        spec = self.spec
        run = invocation.run
        context = invocation.context
        asset_def = invocation.asset
        started = perf_counter()
        versions = dict(invocation.input_versions)
        init = BarrierInit(
            key=barrier_id_of(self.run_id, self.asset, self.partition),
            run_id=self.run_id,
            asset=self.asset,
            partition=self.partition,
            run_partition=run.partition,
            pipeline=run.pipeline.name,
            code_version=asset_def.code_version,
            recipe=recipe_of(asset_def.code_version, self.partition, versions),
            input_versions=versions,
            attempt=context.attempt,
            keyed=spec.key is not None,
            batched=spec.batch is not None,
            tolerated=spec.tolerated_failure,
        )
        barrier, checkpoint, _ = await self.ops.open_managed(init)
        self.barrier_id = barrier.id
        self.counts = counts = barrier.counts
        sinks = run.runtime.has_sinks
        reporter = ScatterReporter(
            emit=run.emit if sinks else None,
            per_item=run.runtime.has_item_sinks,
            bar=spec.progress,
            run_id=self.run_id,
            asset=self.asset,
            partition=self.partition,
        )
        reporter.started(counts.total, spec.max_concurrent, spec.batch is not None)
        status = "failed"
        failures: list[tuple[str, str]] = []
        try:
            if counts.status == "open":
                counts = await self._work(barrier, checkpoint, reporter)
            if counts.failed:
                failures = await self.ops.failures(barrier.id, MAX_LISTED_FAILURES)
            if counts.status == "exceeded":
                raise ScatterFailureThresholdExceeded(
                    self.asset,
                    self.partition,
                    counts.total if counts.total is not None else counts.enumerated,
                    counts.succeeded,
                    counts.failed,
                    failures[:FIRST_ERRORS],
                    run_id=self.run_id,
                    attempt=context.attempt,
                    tolerated=spec.tolerated_failure,
                )
            if counts.status == "cancelled":
                raise BarrierCancelledError(self.asset, self.partition, counts.reason)
            if counts.status == "failed" or not counts.complete:
                raise ScatterBarrierFailedError(self.asset, self.partition, counts.reason)
            value = await self._gather(barrier.id)
            await self.ops.set_status(barrier.id, "done", None, when=("open",))
            status = "succeeded"
            return value
        except anyio.get_cancelled_exc_class():
            status = "cancelled"
            raise
        finally:
            final = self.counts or counts
            summary = ScatterSummary(
                total=final.total if final.total is not None else final.enumerated,
                succeeded=final.succeeded,
                failed=final.failed,
                retried=final.retried,
                failures=tuple(failures),
                duration=perf_counter() - started,
            )
            context.add_metadata(scatter=summary.as_dict())
            if reporter.active:
                reporter.progress(final.finished, final.total, final.failed)
            reporter.finished(status, summary)

    async def _work(
        self, barrier: BarrierRow, checkpoint: Checkpoint, reporter: ScatterReporter
    ) -> Counts:
        """Enumerate (unless done), run items here, and wait until every item is terminal."""
        source_done = checkpoint.source_done
        coordinator = self.coordinator
        invocation = self.invocation
        spec = self.spec
        run = invocation.run
        batch = spec.batch
        needs_deps = (not source_done and spec.items is not None) or (
            batch is not None and callable(batch.batch_input)
        )
        deps = await dependency_values(invocation) if needs_deps else {}
        batch_input = (
            await evaluate_batch_input(batch.batch_input, deps) if batch is not None else None
        )
        source: Any = None
        if not source_done:
            if spec.items is not None:
                source = spec.items(deps)
            else:
                reader = spec.reader
                source = run.runtime.item_readers.get(reader) if isinstance(reader, str) else reader
        local = (
            coordinator.local_concurrency
            if coordinator.local_concurrency is not None
            else spec.max_concurrent
        )
        runner = (
            ItemRunner(
                invocation_call(invocation, own_task=True),
                retry=spec.retry,
                timeout=spec.timeout,
                limiter=spec.limiter(),
            )
            if local
            else None
        )
        io = coordinator.store.io_manager
        session = await coordinator._session()
        reusable = False
        try:
            executor = BarrierExecutor(
                self.ops,
                session,
                barrier.id,
                runner,
                barrier.counts,
                max_concurrent=local,
                batch=batch,
                batch_input=batch_input,
                reporter=reporter,
                stay=True,
                allow_pickle=self.allow_pickle,
                where=self.where,
                flush_interval=coordinator.flush_interval,
                poll_interval=coordinator.poll_interval,
                reap_interval=min(0.5, coordinator.lease / 4),
                compression=io.compression_for(self.asset, invocation.asset.metadata),
                compression_threshold=io.compression_threshold,
            )
            topic = str(barrier.id)

            def on_page(counts: Counts, unclaimed: bool) -> None:
                executor.observe(counts)
                self.counts = executor.counts
                if unclaimed or counts.source_done:
                    executor.claimer.inserted_unclaimed()
                    session.poke(topic)  # items to claim (or the end to notice)

            async with anyio.create_task_group() as tg:
                await tg.start(session.run)
                if not source_done:
                    enumerator = Enumerator(
                        self.ops,
                        barrier.id,
                        checkpoint,
                        spec,
                        source,
                        where=self.where,
                        asset=self.asset,
                        partition=self.partition,
                        allow_pickle=self.allow_pickle,
                        notify=(session.channel, topic),
                        on_page=on_page,
                        taker=executor.held if local else None,
                        worker_no=session.worker_no,
                        others_alive=session.others_alive,
                    )
                    if enumerator.ledger is not None:
                        executor.accept_unstored(
                            enumerator.ledger, enumerator.finish, keep=spec.gather is None
                        )
                    tg.start_soon(self._enumerate, enumerator, executor, barrier.id, session)
                try:
                    counts = await executor.run()
                except Exception as exc:
                    if self.fatal is None:
                        self.fatal = exc
                    counts = executor.counts
                self.counts = counts
                self.kept = executor.kept_results()
                tg.cancel_scope.cancel()
            reusable = self.fatal is None
        finally:
            with anyio.CancelScope(shield=True):
                await coordinator._release_session(session, reusable=reusable)
        if self.fatal is not None:
            raise self.fatal
        return counts

    async def _enumerate(
        self,
        enumerator: Enumerator,
        executor: BarrierExecutor,
        barrier_id: int,
        session: WorkerSession,
    ) -> None:
        executor.claimer.set_enumerating(enumerator.feeds)
        try:
            await enumerator.run()
        except Exception as exc:
            self.fatal = exc
            executor.stop()
            with anyio.CancelScope(shield=True):
                try:
                    await self.ops.set_status(
                        barrier_id, "failed", f"{type(exc).__name__}: {exc}", when=("open",)
                    )
                    await self.ops.notify(session.channel, str(barrier_id))
                except Exception as error:
                    _log.warning(
                        "could not mark scatter barrier %d failed: %s",
                        barrier_id,
                        describe(error),
                    )
        finally:
            executor.claimer.set_enumerating(False)

    async def _gather(self, barrier_id: int) -> Any:
        if self.spec.gather is not None:
            results = _Successes(self.ops, barrier_id, self.allow_pickle, self.where)
            return await call_gather(self.spec.gather, results)
        if self.kept is not None:
            return self.kept  # every result was this process's, as it loads back
        return await _all_successes(self.ops, barrier_id, self.allow_pickle, self.where)
