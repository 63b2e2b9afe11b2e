"""The extension points of flowstone, as ``typing.Protocol`` classes.

Each protocol states the contract an implementation keeps. Built-in implementations live
in :mod:`flowstone._core.memory` (in-memory defaults) and in the plugins under
``flowstone.ext``; a runtime resolves them by name through its registries. Plugin authors
import these from :mod:`flowstone.protocols`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
    from datetime import datetime

    from .assets import AssetDef
    from .events import Event
    from .health import ComponentHealth
    from .invocation import Invocation
    from .records import GateRecord, GateStatus, MaterializationRecord, RunRecord, RunStatus, Status
    from .runtime import Runtime

__all__ = [
    "BarrierState",
    "BranchRecord",
    "Coordinator",
    "EventSink",
    "GateStore",
    "HealthCheck",
    "IOContext",
    "IOManager",
    "ItemPage",
    "ItemReader",
    "MaterializationStore",
    "ParallelCoordinator",
    "PartitionLister",
    "PipelinedRecordStore",
    "Plugin",
    "RouteDecision",
    "RoutingCoordinator",
    "ScatterCoordinator",
    "RunTagger",
    "ScatterItemResult",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


# -- IO managers -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IOContext:
    """Which value an IO manager is asked about, and what it may need to know.

    :param asset: the asset's name
    :param partition: the partition key, or ``None``
    :param run_id: the run storing or loading, when there is one
    :param metadata: the asset's static metadata (IO managers read options from it, e.g.
        ``{"table": "orders"}``)
    :param definition: the asset's definition, when known
    :param options: options of one ``load`` call, passed through as given
        (``fs.load(orders, options={"columns": ["id"]})``); an IO manager reads the ones it
        knows and may reject the others
    """

    asset: str
    partition: str | None = None
    run_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    definition: AssetDef[..., Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class IOManager(Protocol):
    """Stores and loads asset values by (asset, partition).

    Contract: ``store`` replaces any previous value atomically (a reader sees the old or the
    new value, never half of one); a value the manager cannot store raises
    :class:`~flowstone.StorageError` naming the asset *before* anything is written;
    ``load`` of a missing value raises :class:`~flowstone.ValueNotFoundError`; ``delete``
    of a missing value is not an error. ``store`` may return a mapping of JSON-able
    metadata about what it stored (a schema, a row count); the materializer adds it to the
    succeeded record's metadata (keys the asset set itself win). A value that is an
    iterator (a stream storing it reads) is loaded back with ``load`` for its dependents.
    """

    async def store(self, context: IOContext, value: Any) -> Mapping[str, Any] | None:
        """Store ``value`` for the asset and partition in ``context``.

        :return: ``None``, or metadata to add to the materialization record
        """
        ...

    async def load(self, context: IOContext) -> Any:
        """Load the stored value; raise ``ValueNotFoundError`` when there is none."""
        ...

    async def exists(self, context: IOContext) -> bool:
        """Whether a value is stored."""
        ...

    async def delete(self, context: IOContext) -> None:
        """Delete the stored value, if any."""
        ...


@runtime_checkable
class PartitionLister(Protocol):
    """Optional IO manager capability: list the partitions stored for an asset."""

    async def list_partitions(self, asset: str) -> list[str | None]:
        """The partition keys with a stored value (``None`` for the unpartitioned value)."""
        ...


# -- materialization store ---------------------------------------------------------------


class MaterializationStore(Protocol):
    """Keeps runs and materialization records.

    Contract: ``create_run`` is idempotent by ``run_id`` (the second call returns the stored
    run, which is how a run resumes); ``save_record`` upserts by (run_id, asset, partition);
    ``latest`` returns the newest *succeeded* record for (asset, partition) that has not
    been invalidated since. Implementations are safe under concurrent use.
    """

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Create ``run``, or return the run stored under its id.

        :return: the stored run and whether it was created now
        """
        ...

    async def finish_run(self, run_id: str, status: RunStatus, ended_at: datetime) -> None:
        """Mark a run ended with ``status``."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""
        ...

    async def list_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """The newest runs first."""
        ...

    async def save_record(self, record: MaterializationRecord) -> None:
        """Insert or replace the record for (run_id, asset, partition)."""
        ...

    async def get_records(self, run_id: str) -> list[MaterializationRecord]:
        """All records of a run."""
        ...

    async def latest(self, asset: str, partition: str | None) -> MaterializationRecord | None:
        """The newest succeeded, not invalidated record of (asset, partition)."""
        ...

    async def history(
        self, asset: str, partition: str | None = None, *, limit: int = 100
    ) -> list[MaterializationRecord]:
        """Records of an asset (one partition, or all when ``partition`` is ``None``), newest first."""
        ...

    async def invalidate(self, asset: str, partition: str | None) -> None:
        """Make ``latest`` forget the current record of (asset, partition)."""
        ...


@runtime_checkable
class PipelinedRecordStore(Protocol):
    """A store that writes succeeded records behind the run, in order (optional).

    The materializer then lets an asset's dependents start while its succeeded record is
    being written, and counts the asset succeeded (its event, the run's end) only once the
    record is durable. Contract: records of a run become durable in the order they were
    begun, and one begun after a write that failed is never written (it fails too), so a
    stored record never outlives the stored records of its inputs; ``save_record`` and
    the readers see a begun record at once.
    """

    @property
    def writes_behind(self) -> bool:
        """Whether the materializer may let dependents go before a record is durable."""
        ...

    def begin_save_record(self, record: MaterializationRecord) -> Awaitable[None]:
        """Start saving a terminal record; the awaitable ends when it is durable.

        :raises StorageError: (from the awaitable) it could not be written
        """
        ...


# -- item readers (scatter sources) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemPage(Generic[T_co]):
    """One page of items from an :class:`ItemReader`.

    :param items: the items, in source order
    :param cursor: an opaque string that resumes reading after this page, or ``None`` when
        the source is exhausted
    """

    items: Sequence[T_co]
    cursor: str | None


@runtime_checkable
class ItemReader(Protocol[T_co]):
    """Streams scatter items page by page and resumes from a checkpointed cursor.

    Contract: reading from the cursor a page returned gives the items after that page, in
    the same order every time; ``read_page(None, n)`` starts from the beginning; a page may
    hold fewer than ``limit`` items and still not be the last (only ``cursor=None`` ends it).
    """

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[T_co]:
        """Read up to ``limit`` items after ``cursor``."""
        ...

    async def count(self) -> int | None:
        """The total number of items when cheaply known, else ``None``."""
        ...


# -- coordinators ------------------------------------------------------------------------


class Coordinator(Protocol):
    """Executes assets of one kind. The materializer hands it each such asset's invocation.

    Contract: return the asset's value, raise :class:`~flowstone.SkipAsset` to skip it, or
    raise the failure. Cancellation must propagate. Retries and the asset's ``timeout`` are
    applied around ``execute`` by the materializer.
    """

    async def execute(self, invocation: Invocation) -> Any:
        """Execute one asset and return its value."""
        ...


@dataclass(frozen=True, slots=True)
class ScatterItemResult:
    """The outcome of one scatter item (or one item of a batch).

    :param key: the item's key, a stable string
    :param index: the item's position in the source
    :param status: ``Status.SUCCEEDED`` or ``Status.FAILED``
    :param value: the result, when it succeeded
    :param error: ``"Type: message"`` of the last failure, when it failed
    :param attempts: attempts made for the item
    """

    key: str
    index: int
    status: Status
    value: Any = None
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class BarrierState:
    """Counts of a scatter barrier, and whether its failure threshold is exceeded."""

    barrier_id: str
    total: int | None
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    exceeded: bool = False
    cancelled: bool = False
    #: Why the barrier was cancelled, when it was (the reason ``cancel`` was given).
    reason: str | None = None

    @property
    def finished(self) -> int:
        """Items that reached a terminal state."""
        return self.succeeded + self.failed

    @property
    def done(self) -> bool:
        """Whether every item is terminal (the total must be known)."""
        return self.total is not None and self.finished >= self.total


class ScatterCoordinator(Coordinator, Protocol):
    """Runs a scatter asset's items and keeps its barrier.

    A barrier tracks every item key of one (run, asset, partition). Contract: keys are
    unique per barrier (a duplicate raises naming the key); ``record`` is idempotent per key
    (a key recorded twice keeps its first terminal result); the threshold decision counts
    each key once; ``gather`` yields terminal results in source order.
    """

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
        """Create the barrier, or return the existing one's state (resume)."""
        ...

    async def add_keys(self, barrier_id: str, keys: Sequence[tuple[int, str]]) -> None:
        """Register items by (source index, key)."""
        ...

    async def set_total(self, barrier_id: str, total: int) -> BarrierState:
        """Fix the item count once the source is exhausted (a fraction threshold needs it)."""
        ...

    async def record(self, barrier_id: str, results: Sequence[ScatterItemResult]) -> BarrierState:
        """Record terminal item results; return the updated counts and threshold decision."""
        ...

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """Terminal results in source order."""
        ...

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled; pending items will not run."""
        ...


@dataclass(frozen=True, slots=True)
class BranchRecord:
    """The state of one branch of a parallel asset in one run."""

    run_id: str
    asset: str
    partition: str | None
    branch: str
    final: str
    status: Status
    required: bool = True
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None


class ParallelCoordinator(Coordinator, Protocol):
    """Runs a parallel asset's branches and its join; keeps branch records."""

    async def save_branch(self, record: BranchRecord) -> None:
        """Insert or replace the record of one branch."""
        ...

    async def branches(self, run_id: str, asset: str, partition: str | None) -> list[BranchRecord]:
        """The branch records of a parallel asset in a run."""
        ...


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """A router's decision in one run: which routed asset runs (``None``: none of them)."""

    run_id: str
    router: str
    partition: str | None
    chosen: str | None
    input_versions: Mapping[str, str] = field(default_factory=dict)
    decided_at: datetime | None = None


class RoutingCoordinator(Coordinator, Protocol):
    """Executes routers (and routed assets) and keeps their decisions."""

    async def record_decision(self, decision: RouteDecision) -> None:
        """Store a decision, replacing an earlier one of the same (run, router, partition)."""
        ...

    async def get_decision(
        self, run_id: str, router: str, partition: str | None
    ) -> RouteDecision | None:
        """The decision stored for (run, router, partition), if any."""
        ...


# -- gates -------------------------------------------------------------------------------


class GateStore(Protocol):
    """Keeps gates: assets suspended until a signal or an approval (see
    ``flowstone.ext.gates``).

    Contract: ``create`` is idempotent by ``gate_id`` (returns the stored gate) and is
    durable when it returns; ``close`` (and ``resolve``) changes a waiting gate exactly
    once, atomically: of concurrent calls on one gate exactly one reports that it closed
    it, and closing a closed gate changes nothing and returns it as stored. Safe under concurrent use.
    """

    async def create(self, gate: GateRecord) -> GateRecord:
        """Create the gate, or return the stored one with the same id."""
        ...

    async def get(self, gate_id: str) -> GateRecord | None:
        """The gate with this id, or ``None``."""
        ...

    async def latest(self, run_id: str, asset: str, partition: str | None) -> GateRecord | None:
        """The gate created last for (run, asset, partition), or ``None``."""
        ...

    async def close(
        self,
        gate_id: str,
        status: GateStatus,
        *,
        at: datetime,
        payload: Any = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> tuple[GateRecord, bool]:
        """Close a waiting gate with ``status`` at time ``at``, atomically.

        :return: the stored gate and whether this call closed it (``False``: it was closed
            already, and is returned unchanged)
        :raises KeyError: no gate has this id
        """
        ...

    async def resolve(
        self,
        gate_id: str,
        status: GateStatus,
        *,
        payload: Any = None,
        by: str | None = None,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> GateRecord:
        """:meth:`close` at ``at`` (default: now), returning only the stored gate.

        :raises KeyError: no gate has this id
        """
        ...

    async def list_open(
        self, run_id: str | None = None, kind: str | None = None
    ) -> list[GateRecord]:
        """Waiting gates (of one run, of one kind, or all), oldest first."""
        ...


# -- events ------------------------------------------------------------------------------


@runtime_checkable
class EventSink(Protocol):
    """Receives lifecycle events.

    Contract: ``emit`` is called on the event loop and must not block; a sink that does
    I/O buffers and writes in its own task. An exception from ``emit`` is logged and
    ignored, so a broken sink never fails a run. A sink that is an async context manager is
    entered when the runtime opens and exited when it closes. A sink that ignores per-item
    events (such as ``ScatterItemFinished``) may say so with a class attribute
    ``item_events = False``: when no sink takes them, they are not built at all.
    """

    def emit(self, event: Event) -> None:
        """Handle one event."""
        ...


@runtime_checkable
class RunTagger(Protocol):
    """An event sink that stores something of its own with each run, in the run's tags.

    Before a run creates its record, the runtime calls ``run_tags`` on each registered sink
    that has it, in the task that called ``materialize`` (so context variables of the
    caller, such as the current trace, are visible). The returned tags are stored on the new
    :class:`~flowstone.RunRecord` (``RunRecord.tags``); a resumed run keeps the tags it was
    created with, and ``stored`` is its record then. The OpenTelemetry sink keeps the run's
    trace context this way. Contract: ``run_tags`` does no I/O, and its keys are namespaced
    (``"flowstone.traceparent"``).
    """

    def run_tags(self, run: RunRecord, stored: RunRecord | None) -> Mapping[str, str]:
        """Tags for the new record of ``run``; ``stored`` is the earlier record when the run
        is resumed (its tags are kept)."""
        ...


# -- health ------------------------------------------------------------------------------


@runtime_checkable
class HealthCheck(Protocol):
    """A part of a runtime that reports its own health (see ``Runtime.health``).

    A store, gate store, IO manager, coordinator, item reader, event sink or plugin that
    has this method is asked by ``runtime.health()``; it returns one
    :class:`~flowstone.ComponentHealth` per component it checks (``PostgresStore``
    reports the connection, the schema version and the scatter workers). Contract: it
    does not raise for a component that is down (it reports it ``down``; an exception
    counts its whole part as down), and it answers within seconds (the runtime stops
    waiting after its timeout). :func:`flowstone.protocols.check_component` times one
    check.
    """

    async def check_health(self) -> Sequence[ComponentHealth]:
        """The health of each component this part checks."""
        ...


# -- plugins -----------------------------------------------------------------------------


@runtime_checkable
class Plugin(Protocol):
    """Wires several parts into a runtime at once (registries, default IO manager, sinks).

    ``fs.Runtime(plugins=[...])`` calls ``install`` once per plugin, while the runtime is
    being built, before the arguments given to ``Runtime(...)`` explicitly are applied (so
    those win). A store with an ``install`` method (``PostgresStore``) is installed the same
    way. Contract: ``install`` only registers; it does no I/O (open connections in an
    ``__aenter__`` the runtime enters when it opens, if the plugin is an async context
    manager).
    """

    def install(self, runtime: Runtime) -> None:
        """Register this plugin's parts on ``runtime``."""
        ...
