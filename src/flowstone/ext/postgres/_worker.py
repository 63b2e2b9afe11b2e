"""Scatter workers: processes that join open durable barriers and run their items.

``flowstone worker --dsn … --pipeline module:attr`` (or :func:`run_worker` in code) starts
one. It looks for open barriers of the pipeline's scatter assets that have items waiting,
and joins each (up to ``max_barriers`` at once): it loads the asset's inputs for the run's
partition through the runtime's IO managers (the process that started the run stored them
durably), checks that they are the versions the run used and that its own code is the
run's code, then claims and runs items beside the starting process, which gathers when
every item is terminal. A barrier it cannot join (other code, an input it cannot load) is
skipped with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

import flowstone as fs
from flowstone import ConfigurationError, RuntimeStateError, ValueNotFoundError
from flowstone.ext.scatter import (
    ItemRunner,
    ScatterReporter,
    ScatterSpec,
    dependency_values,
    invocation_call,
)
from flowstone.protocols import Invocation, IOContext

from ._barrier_executor import DEFAULT_FLUSH_INTERVAL, DEFAULT_POLL_INTERVAL, BarrierExecutor
from ._barrier_statements import BarrierStatements
from ._errors import describe
from ._rows import where_names
from ._scatter import evaluate_batch_input
from ._scatter_session import DEFAULT_LEASE, WorkerSession
from ._store import PostgresStore
from ._worker_resources import missing_resources

if TYPE_CHECKING:
    import argparse
    import types
    from collections.abc import Iterable, Mapping

    from flowstone import AssetDef, Pipeline, Runtime
    from flowstone.events import Event
    from flowstone.protocols import AssetOutcome

    from ._barrier_rows import BarrierRow

__all__ = ["ScatterWorker", "WorkerStats", "register_worker_cli", "run_worker"]

_log = logging.getLogger("flowstone.postgres")
_ANY = "*"


@dataclass(slots=True)
class WorkerStats:
    """What a worker did.

    :ivar barriers: barriers it joined (a barrier joined again counts again)
    :ivar items: items it ran
    :ivar recorded: results of its that were stored (others were already terminal)
    :ivar skipped: barriers it could not join, with the reason
    """

    barriers: int = 0
    items: int = 0
    recorded: int = 0
    skipped: dict[int, str] = field(default_factory=dict)


class _WorkerRun:
    """The run of a joined barrier, as the item functions' invocation sees it."""

    def __init__(self, barrier: BarrierRow, runtime: Runtime, pipeline: Pipeline) -> None:
        self._barrier = barrier
        self._runtime = runtime
        self._pipeline = pipeline

    @property
    def run_id(self) -> str:
        return self._barrier.run_id

    @property
    def partition(self) -> str | None:
        return self._barrier.run_partition

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def pipeline(self) -> Pipeline:
        return self._pipeline

    @property
    def force(self) -> bool:
        return False

    async def materialize(self, names: Iterable[str]) -> dict[str, AssetOutcome]:
        raise RuntimeStateError(
            "a scatter worker runs items only; it cannot materialize other assets"
        )

    def outcome(self, name: str) -> AssetOutcome | None:
        return None

    def emit(self, event: Event) -> None:
        self._runtime.emit(event)

    async def value(self, name: str) -> Any:
        asset_def = self._pipeline[name]
        partition = self.partition if asset_def.partitions is not None else None
        return await self._runtime.io_manager_for(asset_def).load(
            IOContext(name, partition, self.run_id, asset_def.metadata, asset_def)
        )


class _CannotJoin(Exception):
    """Why this worker does not join a barrier."""


class _LacksResources(_CannotJoin):
    """This worker lacks resources the items read: it must not claim (and fail) them."""


class ScatterWorker:
    """Joins open durable scatter barriers of a pipeline and runs their items.

    :param target: a DSN, a :class:`PostgresStore`, or an ``fs.Runtime`` whose store is one
        (give a runtime when the pipeline's inputs live in other IO managers, or it needs
        resources)
    :param pipeline: the pipeline (or assets) whose scatter assets it serves; it must be
        the code the runs were started with
    :param schema: the schema, when ``target`` is a DSN
    :param max_concurrent: units run at once per barrier (default: each asset's
        ``max_concurrent``)
    :param max_barriers: barriers worked on at once
    :param resources: resources for the item functions (layered over the runtime's)
    :param lease: seconds this worker's claims outlive its last heartbeat
    :param stop_when_idle: return once no barrier had work for ``idle_timeout`` seconds
    :param idle_timeout: seconds of idleness that end a worker with ``stop_when_idle``
    :param poll_interval: the longest wait between looks for work
    :raises ConfigurationError: a bad target or option
    """

    def __init__(
        self,
        target: str | PostgresStore | Runtime,
        pipeline: Pipeline | Iterable[AssetDef[..., Any] | types.ModuleType] | types.ModuleType,
        *,
        schema: str = "flowstone",
        max_concurrent: int | None = None,
        max_barriers: int = 4,
        resources: Mapping[str, Any] | None = None,
        lease: float = DEFAULT_LEASE,
        stop_when_idle: bool = False,
        idle_timeout: float = 5.0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        if max_concurrent is not None and max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
        if max_barriers < 1:
            raise ConfigurationError(f"max_barriers must be at least 1, got {max_barriers!r}")
        if not lease > 0 or not poll_interval > 0 or idle_timeout < 0:
            raise ConfigurationError("lease and poll_interval must be positive, idle_timeout >= 0")
        self._owns_runtime = not isinstance(target, fs.Runtime)
        if isinstance(target, fs.Runtime):
            runtime = target
        else:
            store = (
                target
                if isinstance(target, PostgresStore)
                else PostgresStore(target, schema=schema)
            )
            runtime = fs.Runtime(store=store)
        if not isinstance(runtime.store, PostgresStore):
            raise ConfigurationError(
                "a scatter worker needs a runtime whose store is a PostgresStore, not "
                f"{type(runtime.store).__name__}"
            )
        self.runtime = runtime
        self.store: PostgresStore = runtime.store
        self.pipeline = pipeline if isinstance(pipeline, fs.Pipeline) else fs.Pipeline(pipeline)
        self._scatter_assets = [
            name
            for name, asset_def in self.pipeline.assets.items()
            if isinstance(asset_def.kind_spec, ScatterSpec)
        ]
        self._max_concurrent = max_concurrent
        self._max_barriers = max_barriers
        self._resources = dict(resources or {})
        self._lease = lease
        self._stop_when_idle = stop_when_idle
        self._idle_timeout = idle_timeout
        self._poll_interval = poll_interval
        self._flush_interval = flush_interval
        self._ops = BarrierStatements(self.store)
        self._active: dict[int, BarrierExecutor] = {}
        self._stopping = False
        self._session: WorkerSession | None = None
        self.stats = WorkerStats()

    def __repr__(self) -> str:
        return f"ScatterWorker(schema={self.store.schema!r}, assets={self._scatter_assets})"

    def stop(self) -> None:
        """Stop looking for work; barriers being worked on are finished first."""
        self._stopping = True
        if self._session is not None:
            self._session.poke(_ANY)

    async def run(self) -> WorkerStats:
        """Serve until :meth:`stop` (or, with ``stop_when_idle``, until idle).

        :return: what the worker did
        """
        if not self._scatter_assets:
            raise ConfigurationError("the pipeline has no scatter assets for a worker to serve")
        if self._owns_runtime:
            async with self.runtime:
                return await self._serve()
        await self.runtime.open()
        return await self._serve()

    async def _serve(self) -> WorkerStats:
        session = self._session = WorkerSession(self._ops, lease=self._lease)
        await session.start()
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(session.run)
                async with anyio.create_task_group() as barriers:
                    await self._look_for_work(session, barriers)
                tg.cancel_scope.cancel()
        finally:
            await session.close()
        return self.stats

    async def _look_for_work(self, session: WorkerSession, barriers: Any) -> None:
        idle_since = anyio.current_time()
        delay = 0.01
        while not self._stopping:
            if len(self._active) < self._max_barriers:
                for row in await self._ops.joinable(self._scatter_assets):
                    if len(self._active) >= self._max_barriers:
                        break
                    if row.id in self._active or row.id in self.stats.skipped:
                        continue
                    executor = await self._join(row, session)
                    if executor is not None:
                        self._active[row.id] = executor
                        self.stats.barriers += 1
                        barriers.start_soon(self._work, row, executor)
            now = anyio.current_time()
            if self._active:
                idle_since = now
                delay = 0.01
            elif self._stop_when_idle and now - idle_since >= self._idle_timeout:
                return
            if not self._stopping:
                await session.wait(_ANY, delay)
            delay = min(delay * 2, self._poll_interval)

    async def _work(self, row: BarrierRow, executor: BarrierExecutor) -> None:
        try:
            await executor.run()
        except Exception as exc:
            _log.warning(
                "scatter worker left barrier %d of %s: %s", row.id, _where(row), describe(exc)
            )
            self.stats.skipped[row.id] = describe(exc)
        finally:
            self.stats.items += executor.stats.items
            self.stats.recorded += executor.stats.applied
            self._active.pop(row.id, None)
            if self._session is not None:
                self._session.poke(_ANY)

    async def _join(self, row: BarrierRow, session: WorkerSession) -> BarrierExecutor | None:
        try:
            invocation, spec = await self._invocation(row)
        except _CannotJoin as exc:
            _log.log(
                logging.ERROR if isinstance(exc, _LacksResources) else logging.WARNING,
                "scatter worker does not join barrier %d of %s: %s",
                row.id,
                _where(row),
                exc,
            )
            self.stats.skipped[row.id] = str(exc)
            return None
        batch = spec.batch
        batch_input = None
        if batch is not None:
            deps = await dependency_values(invocation) if callable(batch.batch_input) else {}
            batch_input = await evaluate_batch_input(batch.batch_input, deps)
        runtime = self.runtime
        sinks = runtime.has_sinks
        reporter = (
            ScatterReporter(
                emit=runtime.emit,
                per_item=runtime.has_item_sinks,
                bar=False,
                run_id=row.run_id,
                asset=row.asset,
                partition=row.partition,
            )
            if sinks
            else None
        )
        runner = ItemRunner(
            invocation_call(invocation, own_task=True),
            retry=spec.retry,
            timeout=spec.timeout,
            limiter=spec.limiter(),
        )
        io = self.store.io_manager
        return BarrierExecutor(
            self._ops,
            session,
            row.id,
            runner,
            row.counts,
            max_concurrent=self._max_concurrent or spec.max_concurrent,
            batch=batch,
            batch_input=batch_input,
            reporter=reporter,
            stay=False,
            allow_pickle=io.allow_pickle,
            where=_where(row),
            flush_interval=self._flush_interval,
            poll_interval=self._poll_interval,
            reap_interval=min(0.5, self._lease / 4),
            compression=io.compression_for(invocation.asset.name, invocation.asset.metadata),
            compression_threshold=io.compression_threshold,
        )

    async def _invocation(self, row: BarrierRow) -> tuple[Invocation, ScatterSpec]:
        """The invocation items of ``row`` run under, with the run's inputs loaded."""
        pipeline = self.pipeline
        if row.pipeline and pipeline.name and row.pipeline != pipeline.name:
            raise _CannotJoin(f"the run belongs to pipeline {row.pipeline!r}")
        asset_def = pipeline[row.asset]
        spec = asset_def.kind_spec
        if not isinstance(spec, ScatterSpec):  # pragma: no cover - joinable lists scatters
            raise _CannotJoin("the asset is not a scatter asset here")
        if asset_def.code_version != row.code_version:
            raise _CannotJoin(
                f"this worker's code of the asset (version {asset_def.code_version}) is not "
                f"the run's (version {row.code_version}); deploy the same code"
            )
        runtime = self.runtime
        resources = runtime.resources.merged(self._resources)
        missing = missing_resources(asset_def.fn, resources)
        if missing:
            names = ", ".join(repr(name) for name in missing)
            raise _LacksResources(
                f"its items read resource(s) {names}, which this worker's runtime lacks, so "
                "it claims none of them (the run goes on with other workers); start it with "
                "a runtime that has them: flowstone worker --runtime module:attr, or "
                "ScatterWorker(runtime, ...) / resources={...}"
            )
        inputs: dict[str, Any] = {}
        for param, dep in asset_def.inputs.items():
            if dep not in row.input_versions:
                if dep in asset_def.optional:
                    inputs[param] = asset_def.defaults.get(param)
                    continue
                raise _CannotJoin(f"the run has no version of input {dep!r}")
            if dep not in pipeline:
                raise _CannotJoin(f"input {dep!r} is not in this worker's pipeline")
            dep_def = pipeline[dep]
            partition = row.run_partition if dep_def.partitions is not None else None
            record = await runtime.store.latest(dep, partition)
            if record is None or record.data_version != row.input_versions[dep]:
                raise _CannotJoin(
                    f"the stored value of input {dep!r} is not the version the run used"
                )
            try:
                inputs[param] = await runtime.io_manager_for(dep_def).load(
                    IOContext(dep, partition, row.run_id, dep_def.metadata, dep_def)
                )
            except ValueNotFoundError:
                raise _CannotJoin(f"input {dep!r} has no stored value") from None
            except Exception as exc:
                raise _CannotJoin(f"cannot load input {dep!r}: {describe(exc)}") from None
        context = fs.Context(
            asset=row.asset,
            partition=row.partition,
            run_id=row.run_id,
            attempt=row.attempt,
            resources=resources,
            runtime=runtime,
        )
        handle = _WorkerRun(row, runtime, pipeline)
        return Invocation(asset_def, context, inputs, handle, dict(row.input_versions)), spec


def _where(row: BarrierRow) -> str:
    return f"{where_names(row.asset, row.partition)} in run {row.run_id!r}"


async def run_worker(
    target: str | PostgresStore | Runtime,
    pipeline: Pipeline | Iterable[AssetDef[..., Any] | types.ModuleType] | types.ModuleType,
    *,
    schema: str = "flowstone",
    max_concurrent: int | None = None,
    stop_when_idle: bool = False,
    **options: Any,
) -> WorkerStats:
    """Run a scatter worker until cancelled (or idle, with ``stop_when_idle``).

    The in-code form of ``flowstone worker``; see :class:`ScatterWorker` for the options::

        await run_worker("postgresql://…/db", pipeline, max_concurrent=50)

    :return: what the worker did
    """
    worker = ScatterWorker(
        target,
        pipeline,
        schema=schema,
        max_concurrent=max_concurrent,
        stop_when_idle=stop_when_idle,
        **options,
    )
    return await worker.run()


# -- the `flowstone worker` command ------------------------------------------------------


def register_worker_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``flowstone worker`` to the CLI's subparsers (see ``_worker_cli``)."""
    from ._worker_cli import register_worker_cli as register

    register(subparsers)
