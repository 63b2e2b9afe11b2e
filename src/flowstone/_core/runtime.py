"""The runtime: registries, stores, resources, sinks and limits, and the operations on them.

A :class:`Runtime` is an async context manager. Without one, the module-level functions
(``fs.materialize`` …) use a default in-memory runtime, one per event loop.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from anyio.lowlevel import RunVar

from .backfill import BackfillResult, backfill_with
from .check_runner import RuntimeChecks
from .clock import Clock, SystemClock
from .context import Resources
from .dynamic_partitions import RuntimePartitions, refresh_dynamic_partitions
from .errors import ConfigurationError, SelectionError
from .health import DEFAULT_HEALTH_TIMEOUT, HealthReport, opening_failed, runtime_health
from .loop_watch import DEFAULT_THRESHOLD, loop_watch
from .mapped_status import in_scope
from .materializer import Run
from .memory import MemoryGateStore, MemoryIOManager, MemoryStore
from .pipeline import Pipeline, as_pipeline
from .protocols import (
    Coordinator,
    EventSink,
    GateStore,
    IOManager,
    ItemReader,
    MaterializationStore,
    Plugin,
    RunTagger,
)
from .registry import BUILTIN_COORDINATORS, BUILTIN_EVENT_SINKS, BUILTIN_IO_MANAGERS, Registry
from .runtime_events import RuntimeEvents
from .runtime_lifecycle import RuntimeLifecycle, enter_resources
from .runtime_options import check_runtime_options
from .status import AssetState
from .stored_values import StoredValues

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .assets import AssetDef
    from .check_store import CheckStore
    from .checks import CheckDef
    from .dynamic_partitions import DynamicPartitionStore
    from .partitions import PartitionsDefinition
    from .result import MaterializeResult
    from .subscriptions import EventHub

__all__ = ["AssetState", "Runtime", "default_runtime", "new_run_id"]


def new_run_id() -> str:
    """A new, time-sortable run id: ``20250102T030405-1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.urandom(4).hex()}"


class Runtime(RuntimeLifecycle, StoredValues, RuntimeEvents, RuntimeChecks):
    """Registries, stores, resources and event sinks: everything a run needs.

    Use it as ``async with fs.Runtime(...) as rt:``; it opens resources, pools and sinks on
    entry and closes them, in reverse order, on exit. It also opens itself on first use.

    :param store: the materialization store (default: in memory). An object with an
        ``install(runtime)`` method (such as ``PostgresStore``) also registers its IO manager
        and coordinators, making the runtime durable in one line
    :param io_managers: extra IO managers by name (objects or ``"module:attr"`` strings)
    :param default_io_manager: the IO manager for assets that do not name one (default:
        ``"memory"``, or what the store installs, such as ``"postgres"``)
    :param resources: objects assets reach as ``ctx.resources.<name>``; async context managers
        among them are entered once, when the runtime opens
    :param event_sinks: receivers of lifecycle events: objects, or names registered in the
        ``flowstone.event_sinks`` entry-point group (or built in: ``"logging"``), so a
        plugin's sink is enabled without importing it (``event_sinks=["otel"]``)
    :param coordinators: coordinators by asset kind, replacing the built-in ones
    :param item_readers: named scatter item readers (``@scatter(reader="events")``); those
        that are async context managers are entered and exited with the runtime
    :param gate_store: where gates (suspended assets) are kept (default: in memory, or
        what the store installs, such as PostgreSQL's)
    :param clock: where every deadline reads the time and waits (gate timeouts, say):
        a :class:`~flowstone.protocols.Clock` (default: :class:`~flowstone.SystemClock`;
        tests pass ``flowstone.testing.VirtualClock``)
    :param max_concurrent: limit on assets executing at once across all runs of this runtime
    :param plugins: further :class:`~flowstone.protocols.Plugin` objects (an
        ``install(runtime)`` method); a plugin that is an async context manager (or any
        such object, an item reader holding a client, say) is opened and closed with the
        runtime
    :param pipelines: named pipelines this runtime knows, so that :meth:`resume` finds a
        run's pipeline by the name its record keeps (see :meth:`register`)
    :param loop_block_warning: seconds an ``async def`` asset may hold the event loop (a
        blocking call inside it) before one warning names it (default 0.5); ``None`` never
        warns
    :raises ConfigurationError: an argument cannot work (naming it)
    """

    def __init__(
        self,
        *,
        store: MaterializationStore | None = None,
        io_managers: Mapping[str, IOManager | str] | None = None,
        default_io_manager: str | None = None,
        resources: Mapping[str, Any] | None = None,
        event_sinks: Sequence[EventSink | str] = (),
        coordinators: Mapping[str, Coordinator | str] | None = None,
        item_readers: Mapping[str, ItemReader[Any] | str] | None = None,
        gate_store: GateStore | None = None,
        max_concurrent: int | None = None,
        plugins: Sequence[object] = (),
        pipelines: Iterable[Pipeline] = (),
        loop_block_warning: float | None = DEFAULT_THRESHOLD,
        clock: Clock | None = None,
    ) -> None:
        check_runtime_options(
            store=store,
            io_managers=io_managers,
            default_io_manager=default_io_manager,
            resources=resources,
            event_sinks=event_sinks,
            coordinators=coordinators,
            item_readers=item_readers,
            gate_store=gate_store,
            max_concurrent=max_concurrent,
            plugins=plugins,
            loop_block_warning=loop_block_warning,
            clock=clock,
        )
        #: Where deadlines read the time and wait (see ``clock=``).
        self.clock: Clock = clock if clock is not None else SystemClock()
        #: Seconds an ``async def`` asset may hold the event loop before one warning names
        #: it (``None``: never warn); see :mod:`flowstone._core.loop_watch`.
        self.loop_block_warning = loop_block_warning
        self.store: MaterializationStore = store if store is not None else MemoryStore()
        # Dynamic partition keys, when the store keeps none (made on first use).
        self._dynamic_partitions: DynamicPartitionStore | None = None
        self.gate_store: GateStore = gate_store if gate_store is not None else MemoryGateStore()
        self.io_managers: Registry[IOManager] = Registry(
            "IO manager", BUILTIN_IO_MANAGERS, entry_point_group="flowstone.io_managers"
        )
        self.io_managers.register("memory", MemoryIOManager())
        self.coordinators: Registry[Coordinator] = Registry(
            "coordinator", BUILTIN_COORDINATORS, entry_point_group="flowstone.coordinators"
        )
        self.item_readers: Registry[ItemReader[Any]] = Registry(
            "item reader", entry_point_group="flowstone.item_readers"
        )
        self.default_io_manager = "memory"
        self._resource_values = dict(resources or {})
        self.resources = Resources()
        #: Event sinks by name: built-in ones and the ``flowstone.event_sinks`` entry points.
        self.event_sink_registry: Registry[EventSink] = Registry(
            "event sink", BUILTIN_EVENT_SINKS, entry_point_group="flowstone.event_sinks"
        )
        self._sinks: list[EventSink] = [self._named_sink(sink) for sink in event_sinks]
        self._taggers = tuple(sink for sink in self._sinks if isinstance(sink, RunTagger))
        self._hub: EventHub | None = None
        self.max_concurrent = max_concurrent
        self._limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent else None
        self._plugins = list(plugins)
        self._given: list[object] = [self.store, *self._plugins, *self._sinks]
        self._known_assets: dict[str, AssetDef[..., Any]] = {}
        self._known_checks: dict[str, dict[str, CheckDef]] = {}
        self._own_check_store: CheckStore | None = None
        self._pipelines: dict[str, Pipeline] = {}
        self._registered: dict[str, Pipeline] = {}
        self._last_pipeline: Pipeline | None = None
        self._state = "new"
        self._stack: contextlib.AsyncExitStack | None = None
        self._entered: set[int] = set()
        self._open_lock: anyio.Lock | None = None
        # Plugins first, so that what is given explicitly here wins over what they install.
        for plugin in (self.store, *self._plugins):
            if isinstance(plugin, Plugin):
                plugin.install(self)
        if gate_store is not None:
            self.gate_store = gate_store  # given explicitly: wins over a store's own
        self._given.insert(1, self.gate_store)
        for name, manager in (io_managers or {}).items():
            self.io_managers.register(name, manager)
            if not isinstance(manager, str):
                self._given.append(manager)
        for kind, coordinator in (coordinators or {}).items():
            self.coordinators.register(kind, coordinator)
            if not isinstance(coordinator, str):
                self._given.append(coordinator)
        for name, reader in (item_readers or {}).items():
            self.item_readers.register(name, reader)
            if not isinstance(reader, str):
                self._given.append(reader)  # a reader holding a client opens and closes here
        if default_io_manager is not None:
            self.default_io_manager = default_io_manager
        for pipeline in pipelines:
            self.register(pipeline)

    # -- plumbing for runs and plugins -------------------------------------------------

    async def health(
        self,
        *,
        timeout: float = DEFAULT_HEALTH_TIMEOUT,  # noqa: ASYNC109 - each check's own limit
    ) -> HealthReport:
        """Check the store, gate store, IO managers and every part with a
        :class:`~flowstone.protocols.HealthCheck`, at once, each within ``timeout`` seconds.

        :return: a :class:`~flowstone.HealthReport`: each component's status and latency
            (a runtime that cannot open reports one ``runtime`` component, down, saying why)
        """
        try:
            await self._ready()
        except Exception as exc:
            return opening_failed(exc)
        return await runtime_health(self, timeout)

    def io_manager_for(self, asset: AssetDef[..., Any] | str) -> IOManager:
        """The IO manager that stores ``asset``'s value."""
        name: str | None = None
        if isinstance(asset, str):
            known = self._known_assets.get(asset)
            name = known.io_manager if known is not None else None
        else:
            name = asset.io_manager
        return self.io_managers.get(name or self.default_io_manager)

    def _remember(self, pipeline: Pipeline) -> None:
        if self._last_pipeline is pipeline:  # the common case: the same pipeline again
            return
        self._last_pipeline = pipeline
        self._known_assets.update(pipeline.assets)
        self._learn_checks(pipeline)
        if pipeline.name:
            self._pipelines[pipeline.name] = pipeline

    def register(self, pipeline: Pipeline) -> Pipeline:
        """Make a named pipeline known, so that ``resume(run_id)`` finds it in any process.

        :return: ``pipeline``, so ``pipeline = rt.register(fs.Pipeline([...], name=...))``
        :raises ConfigurationError: the pipeline has no name, or another pipeline is
            registered under its name
        """
        if not isinstance(pipeline, Pipeline):
            raise ConfigurationError(
                f"register() takes a Pipeline, not {type(pipeline).__name__}: "
                "wrap the assets in fs.Pipeline([...], name=...)"
            )
        if not pipeline.name:
            raise ConfigurationError(
                "only a named pipeline can be registered: fs.Pipeline([...], name=...)"
            )
        known = self._registered.get(pipeline.name)
        if known is not None and known is not pipeline:
            raise ConfigurationError(f"another pipeline is already registered as {pipeline.name!r}")
        self._registered[pipeline.name] = pipeline
        self._pipelines.setdefault(pipeline.name, pipeline)
        self._known_assets.update(pipeline.assets)
        self._learn_checks(pipeline)
        return pipeline

    # -- operations ------------------------------------------------------------------

    async def materialize(
        self,
        assets: Any,
        select: Any = None,
        *,
        partition: str | None = None,
        force: bool = False,
        with_deps: bool = True,
        resources: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        max_concurrent: int | None = None,
        raise_on_error: bool = True,
        checks: bool = True,
    ) -> MaterializeResult:
        """Materialize the selected assets (and, by default, their upstream) in one run.

        Independent assets run concurrently. A stored upstream value is reused while it is
        current (same code version and input versions); selected assets are computed.
        Materializing an existing ``run_id`` again resumes that run: what succeeded in it is
        not run again.

        :param assets: a :class:`Pipeline`, assets, or modules of assets
        :param select: asset names (or assets) to materialize; default all
        :param partition: the partition key for partitioned assets
        :param force: recompute even current upstream values (and redo recorded decisions)
        :param with_deps: also materialize the upstream of the selection; when false, inputs
            are loaded from storage and a missing one fails clearly
        :param resources: resources for this run, layered over the runtime's
        :param run_id: the run's id; an existing id resumes that run
        :param max_concurrent: at most this many assets of this run execute at once
        :param raise_on_error: raise the first failure (after the run ends) instead of
            returning a failed result
        :param checks: run the checks of the assets computed (``@fs.check``); a value that
            fails an ``error`` check blocks its dependents and fails the run
        :return: the :class:`MaterializeResult`
        :raises AssetExecutionError: an asset failed (``raise_on_error``); ``.result`` holds
            the run's result
        :raises CheckFailedError: a value failed an ``error`` check (``raise_on_error``)
        :raises SelectionError: a selected name does not exist
        :raises PartitionError: the partition is missing or invalid for a selected asset
        """
        await self._ready()
        pipeline = as_pipeline(assets)
        self._remember(pipeline)
        await refresh_dynamic_partitions(self, pipeline)
        selection = pipeline.resolve(select)
        if select is None and partition is not None:
            # The whole pipeline, for one partition: not the assets read only through
            # partition mappings (they run for the partitions the mappings name).
            selection = [a.name for a in in_scope(pipeline)]
        if max_concurrent is not None and max_concurrent < 1:
            raise ConfigurationError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
        async with contextlib.AsyncExitStack() as stack:
            run_resources = self.resources
            if resources:
                run_resources = self.resources.merged(await enter_resources(stack, resources))
            run = Run(
                self,
                pipeline,
                run_id=run_id or new_run_id(),
                new_id=not run_id,
                partition=partition,
                selection=selection,
                force=force,
                with_deps=with_deps,
                resources=run_resources,
                max_concurrent=max_concurrent,
                checks=checks,
            )
            threshold = self.loop_block_warning
            watched = None if threshold is None else loop_watch.start(self, pipeline, threshold)
            try:
                if self._limiter is not None:
                    async with self._limiter:
                        result = await run.execute()
                else:
                    result = await run.execute()
            finally:
                loop_watch.stop(watched)
        if raise_on_error and not result.ok:
            for name in pipeline.order:
                error = result.errors.get(name)
                if error is not None:
                    error.result = result  # type: ignore[attr-defined]  # documented attribute
                    raise error
        return result

    @property
    def partitions(self) -> RuntimePartitions:
        """Dynamic partition keys: ``await runtime.partitions.add("customers", ["acme"])``
        (also ``remove`` and ``keys``; see :class:`~flowstone.DynamicPartitions`)."""
        return RuntimePartitions(self)

    async def resume(
        self,
        run_id: str,
        pipeline: Any = None,
        *,
        resources: Mapping[str, Any] | None = None,
        raise_on_error: bool = True,
    ) -> MaterializeResult:
        """Continue a run where it stopped: what succeeded is kept, the rest runs.

        The run's record keeps its pipeline's name, selection and partition. In a fresh
        process (the usual case after a crash) the runtime knows the pipeline when it was
        registered (``Runtime(pipelines=[...])`` or :meth:`register`); otherwise pass it.

        :param run_id: the run to resume
        :param pipeline: the pipeline (default: the registered, or earlier materialized,
            pipeline with the run's pipeline name)
        :raises ConfigurationError: the run is not in the store, or its pipeline is not
            known to this runtime (the message says how to pass it)
        """
        await self._ready()
        run = await self.store.get_run(run_id)
        if run is None:
            raise ConfigurationError(f"no run with id {run_id!r} in the store")
        if pipeline is None:
            pipeline = self._pipelines.get(run.pipeline or "")
            if pipeline is None:
                made_by = (
                    f"pipeline {run.pipeline!r}, which this runtime does not know"
                    if run.pipeline
                    else "an unnamed pipeline, which cannot be found by name"
                )
                raise ConfigurationError(
                    f"cannot resume run {run_id!r}: it was made by {made_by}; pass it as "
                    "resume(run_id, pipeline), or register the named pipeline with "
                    "Runtime(pipelines=[...]) or runtime.register(pipeline)"
                )
        return await self.materialize(
            pipeline,
            list(run.selection),
            partition=run.partition,
            resources=resources,
            run_id=run_id,
            raise_on_error=raise_on_error,
        )

    async def backfill(
        self,
        assets: Any,
        select: Any = None,
        *,
        partitions: PartitionsDefinition | Iterable[str] | str,
        max_concurrent: int = 4,
        force: bool = False,
        resources: Mapping[str, Any] | None = None,
        checks: bool = True,
    ) -> BackfillResult:
        """Materialize a selection for many partitions (see :func:`flowstone.backfill`)."""
        await self._ready()
        return await backfill_with(
            self,
            assets,
            select,
            partitions=partitions,
            max_concurrent=max_concurrent,
            force=force,
            resources=resources,
            checks=checks,
        )

    def pipeline(self, name: str) -> Pipeline:
        """A pipeline this runtime has registered or materialized, by name."""
        try:
            return self._pipelines[name]
        except KeyError:
            raise SelectionError(name, list(self._pipelines)) from None

    def __repr__(self) -> str:
        return (
            f"<Runtime {self._state} store={type(self.store).__name__} "
            f"default_io_manager={self.default_io_manager!r}>"
        )


_default: RunVar[Runtime] = RunVar("flowstone_default_runtime")


def default_runtime() -> Runtime:
    """The default in-memory runtime of the running event loop (created on first use)."""
    try:
        return _default.get()
    except LookupError:
        runtime = Runtime()
        _default.set(runtime)
        return runtime
