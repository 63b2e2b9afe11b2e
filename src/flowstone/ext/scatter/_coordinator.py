"""``InProcessScatterCoordinator``: runs scatter assets on this process's event loop.

It is the built-in coordinator of the ``"scatter"`` kind. :meth:`~InProcessScatterCoordinator.execute`
runs the items on the :class:`~._engine.ScatterEngine` and leaves the summary on the asset's
record (``metadata["scatter"]``). It also keeps barriers in memory (the
:class:`~flowstone.protocols.ScatterCoordinator` barrier methods), a thin, correct
implementation for code that drives items itself; ``execute`` does not go through them,
since in one process the engine's counters are the barrier and recording each item there
would only cost time and memory.

Pinning: an asset declared with ``coordinator="name"`` reaches this coordinator (the
materializer looks coordinators up by kind), which hands it to
``runtime.coordinators.get("name")`` unless that is this very object. A durable
coordinator does the same, so a pin works whichever one the runtime registered for the
kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstone import InvalidAssetError, ValueNotFoundError
from flowstone._core.barrier_store import SourceCheckpoint
from flowstone.protocols import (
    BarrierState,
    Coordinator,
    Invocation,
    IOContext,
    ItemReader,
    ScatterItemResult,
)

from ._engine import ScatterEngine
from ._memory_barriers import MemoryBarrierStore
from ._progress import ScatterReporter
from ._runner import ItemRunner, invocation_call
from ._sources import open_feed
from ._spec import ScatterSpec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

__all__ = [
    "InProcessScatterCoordinator",
    "dependency_values",
    "pinned_coordinator",
    "run_scatter",
    "scatter_reporter",
    "scatter_source",
    "scatter_spec_of",
]


def scatter_spec_of(invocation: Invocation) -> ScatterSpec:
    """The :class:`ScatterSpec` of an invocation's asset.

    :raises InvalidAssetError: the asset is not a scatter asset
    """
    spec = invocation.asset.kind_spec
    if not isinstance(spec, ScatterSpec):
        raise InvalidAssetError(
            invocation.asset.name, f"is a {invocation.asset.kind!r} asset, not a scatter asset"
        )
    return spec


def pinned_coordinator(invocation: Invocation, current: object) -> Coordinator | None:
    """The coordinator an asset pins with ``coordinator=``, unless it is ``current``.

    :return: the coordinator to hand the invocation to, or ``None`` to run it here
    :raises PluginNotFoundError: no coordinator is registered under the pinned name
    """
    name = scatter_spec_of(invocation).coordinator
    if name is None:
        return None
    coordinator = invocation.run.runtime.coordinators.get(name)
    return None if coordinator is current else coordinator


async def dependency_values(invocation: Invocation) -> dict[str, Any]:
    """The values ``items=`` (and a callable ``batch_input``) receive, by asset name.

    Inputs come as the materializer resolved them; ordering dependencies (the names
    ``items=`` reads, and any ``deps=[...]`` of the asset) are taken from the run when it
    computed them, else loaded from their IO managers.
    """
    asset = invocation.asset
    values: dict[str, Any] = {}
    for param, dep in asset.inputs.items():
        if param in invocation.inputs:
            values[dep] = invocation.inputs[param]
    run = invocation.run
    pipeline = run.pipeline
    for dep in asset.ordering_deps:
        if dep in values or dep not in pipeline:
            continue
        outcome = run.outcome(dep)
        if outcome is not None:
            if not outcome.ok:
                continue  # an optional dependency that was skipped or failed
            values[dep] = await run.value(dep)
            continue
        dep_def = pipeline[dep]
        partition = run.partition if dep_def.partitions is not None else None
        try:
            values[dep] = await run.runtime.io_manager_for(dep_def).load(
                IOContext(dep, partition, run.run_id, dep_def.metadata, dep_def)
            )
        except ValueNotFoundError:
            continue
    return values


async def _evaluate(value: Any, deps: Mapping[str, Any]) -> Any:
    if callable(value):
        value = value(deps)
        if hasattr(value, "__await__"):
            value = await value
    return value


def scatter_source(invocation: Invocation, spec: ScatterSpec, deps: Mapping[str, Any]) -> Any:
    """What a scatter asset's items come from: ``items=`` called with ``deps``, or its
    ``reader=`` (a registered reader's name resolved).

    :raises InvalidAssetError: the reader is not an ``ItemReader``
    """
    if spec.items is not None:
        return spec.items(deps)
    reader = spec.reader
    source = invocation.run.runtime.item_readers.get(reader) if isinstance(reader, str) else reader
    if not isinstance(source, ItemReader):  # pragma: no cover - registries hold readers
        raise InvalidAssetError(invocation.context.asset, f"reader {reader!r} is not an ItemReader")
    return source


def scatter_reporter(invocation: Invocation, spec: ScatterSpec) -> ScatterReporter:
    """The events and progress bar of a scatter asset's run (per-item events only when a
    sink of the runtime takes them)."""
    run = invocation.run
    context = invocation.context
    sinks = run.runtime.has_sinks
    return ScatterReporter(
        emit=run.emit if sinks else None,
        per_item=run.runtime.has_item_sinks,
        bar=spec.progress,
        run_id=run.run_id,
        asset=context.asset,
        partition=context.partition,
    )


async def run_scatter(invocation: Invocation, spec: ScatterSpec) -> Any:
    """Run a scatter invocation in this process and return the gathered value.

    The summary is added to the asset's record as ``metadata["scatter"]``, whether the
    scatter succeeds or fails.
    """
    run = invocation.run
    context = invocation.context
    deps = await dependency_values(invocation)
    feed = await open_feed(scatter_source(invocation, spec, deps), page_size=spec.page_size)
    batch_input = await _evaluate(spec.batch.batch_input, deps) if spec.batch is not None else None
    reporter = scatter_reporter(invocation, spec)
    call = invocation_call(invocation, own_task=True)
    runner = ItemRunner(
        call,
        retry=spec.retry,
        timeout=spec.timeout,
        limiter=spec.limiter(),
        by_position=call,
    )
    engine = ScatterEngine(
        feed,
        runner,
        max_concurrent=spec.max_concurrent,
        key=spec.key,
        tolerated_failure=spec.tolerated_failure,
        batch=spec.batch,
        batch_input=batch_input,
        gather=spec.gather,
        reporter=reporter,
        asset=context.asset,
        partition=context.partition,
        run_id=run.run_id,
        attempt=context.attempt,
    )
    try:
        return await engine.run()
    finally:
        context.add_metadata(scatter=engine.summary().as_dict())


class InProcessScatterCoordinator:
    """Runs scatter assets in this process (the built-in ``"scatter"`` coordinator).

    One instance serves a runtime; it keeps no per-run state besides the barriers made
    through its barrier methods, which it keeps in a
    :class:`~flowstone.ext.scatter.MemoryBarrierStore`.

    :param barriers: the store of those barriers (default: a new one)
    """

    def __init__(self, barriers: MemoryBarrierStore | None = None) -> None:
        #: Where the barrier methods keep their barriers.
        self.barriers = barriers if barriers is not None else MemoryBarrierStore()

    # -- Coordinator -------------------------------------------------------------------

    async def execute(self, invocation: Invocation) -> Any:
        """Run the scatter asset of ``invocation`` and return its gathered value.

        An asset that pins another coordinator (``coordinator="name"``) is handed to it.

        :raises ScatterFailureThresholdExceeded: more items failed than tolerated
        :raises DuplicateScatterKeyError: two items have the same key
        """
        spec = scatter_spec_of(invocation)
        delegate = pinned_coordinator(invocation, self)
        if delegate is not None:
            return await delegate.execute(invocation)
        return await run_scatter(invocation, spec)

    # -- barriers ------------------------------------------------------------------------

    async def create_barrier(
        self,
        barrier_id: str,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        tolerated_failure: float | None,
        total: int | None = None,
    ) -> BarrierState:
        """Create a barrier, or return the state of the existing one with this id.

        :param tolerated_failure: a count (``int``) or fraction (``float``); ``None`` is 0
        """
        return await self.barriers.open_barrier(
            barrier_id,
            run_id=run_id,
            asset=asset,
            partition=partition,
            tolerated_failure=tolerated_failure,
            total=total,
        )

    async def add_keys(self, barrier_id: str, keys: Sequence[tuple[int, str]]) -> None:
        """Register items by ``(index, key)``; adding the same pair again is harmless.

        :raises DuplicateScatterKeyError: a key is already registered at another index
        """
        ordered = sorted(keys)
        read = ordered[-1][0] + 1 if ordered else 0
        await self.barriers.add_items(
            barrier_id, [(index, key, None) for index, key in ordered], SourceCheckpoint(read)
        )

    async def set_total(self, barrier_id: str, total: int) -> BarrierState:
        """Record the total once the source is exhausted (a fraction can then be decided)."""
        return await self.barriers.add_items(
            barrier_id, [], SourceCheckpoint(total, exhausted=True)
        )

    async def record(self, barrier_id: str, results: Sequence[ScatterItemResult]) -> BarrierState:
        """Record terminal results; a key recorded before keeps its first result.

        :return: the counts and the threshold decision after these results
        """
        return await self.barriers.record(barrier_id, None, results)

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The recorded results in source order."""
        return self.barriers.gather(barrier_id)

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled."""
        await self.barriers.cancel(barrier_id, reason)

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's current counts."""
        return await self.barriers.state(barrier_id)

    async def drop(self, barrier_id: str) -> None:
        """Forget a barrier (its keys and results)."""
        await self.barriers.drop(barrier_id)
