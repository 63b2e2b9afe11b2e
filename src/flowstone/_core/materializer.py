"""The materializer: executes one run of a pipeline selection.

One execution path: a ready-queue scheduler on an anyio task group starts an asset when
its last scheduled dependency is terminal. Plain assets are called here; every other
kind goes to the coordinator registered for it. Retries, timeouts, versions, records,
storage and events are applied the same way to every kind.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

import anyio

from .assets import AssetDef, SkipAsset
from .canonical_keys import canonical_partition
from .context import Context, Resources
from .deadline import call_with_timeout
from .errors import (
    AssetExecutionError,
    AssetTimeoutError,
    ExecutionError,
    MissingInputError,
    PartitionError,
    StorageError,
    ValueNotFoundError,
)
from .events import (
    AssetFailed,
    AssetRetried,
    AssetSkipped,
    AssetStarted,
    AssetSucceeded,
    Event,
    RunFinished,
    RunStarted,
)
from .invocation import AssetOutcome, Invocation
from .protocols import IOContext
from .records import MaterializationRecord, RunRecord, RunStatus, Status
from .result import _NOT_LOADED, MaterializeResult
from .scheduling import run_ready_queue
from .versions import data_version

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from .pipeline import Pipeline
    from .protocols import PipelinedRecordStore
    from .runtime import Runtime

__all__ = ["Run", "data_version"]

_cancelled = anyio.get_cancelled_exc_class


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _first_error(group: BaseExceptionGroup[BaseException]) -> Exception | None:
    """The first error of ``group``, noting how many more came with it; ``None`` when the
    group holds a cancellation (it must travel as it is)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = list(error.exceptions)
        else:
            leaves.append(error)
    if not leaves or not all(isinstance(e, Exception) for e in leaves):
        return None
    first = leaves[0]
    assert isinstance(first, Exception)
    if len(leaves) > 1:
        more = len(leaves) - 1
        first.add_note(f"({more} more error{'s' if more > 1 else ''} came with it)")
    return first


def _now() -> datetime:
    return datetime.now(UTC)


class Run:
    """One run of a pipeline selection: its state, scheduler and outcomes.

    Implements :class:`~flowstone.protocols.RunHandle` for coordinators.
    """

    def __init__(
        self,
        runtime: Runtime,
        pipeline: Pipeline,
        *,
        run_id: str,
        partition: str | None,
        selection: list[str],
        force: bool,
        with_deps: bool,
        resources: Resources,
        max_concurrent: int | None,
    ) -> None:
        self._runtime = runtime
        self._pipeline = pipeline
        self._run_id = run_id
        self._partition = partition
        self._selection = selection
        self._selected = frozenset(selection)
        self._force = force
        self._with_deps = with_deps
        self.resources = resources
        self._limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent else None
        self._outcomes: dict[str, AssetOutcome] = {}
        self._running: set[str] = set()
        # Assets whose dependents were let go before their record was durable (a store
        # that writes records behind the run), and how to let the dependents of an asset go.
        self._released: set[str] = set()
        self._finishers: dict[str, Callable[[str], None]] = {}
        # (An attribute look-up: isinstance() against the protocol costs about 9 µs a run.)
        store = runtime.store
        self._begin_save: Callable[[MaterializationRecord], Awaitable[None]] | None = (
            cast("PipelinedRecordStore", store).begin_save_record
            if getattr(store, "writes_behind", False) is True
            else None
        )
        self._cancelled: dict[str, AssetOutcome] = {}
        self._waiters: dict[str, anyio.Event] = {}
        self._previous: dict[str, MaterializationRecord] = {}
        self._sinks = runtime.has_sinks

    # -- RunHandle -------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run_id

    @property
    def partition(self) -> str | None:
        """The run's partition key."""
        return self._partition

    @property
    def runtime(self) -> Runtime:
        """The runtime executing the run."""
        return self._runtime

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline of the run."""
        return self._pipeline

    @property
    def force(self) -> bool:
        """Whether current values are recomputed and recorded decisions redone."""
        return self._force

    def outcome(self, name: str) -> AssetOutcome | None:
        """The terminal outcome of ``name`` in this run, if any."""
        return self._outcomes.get(name)

    def emit(self, event: Event) -> None:
        """Send ``event`` to the runtime's sinks."""
        self._runtime.emit(event)

    async def value(self, name: str) -> Any:
        """The value of a succeeded asset of this run, loaded from storage if it was reused.

        :raises KeyError: the asset has not succeeded in this run
        """
        outcome = self._outcomes.get(name)
        if outcome is None or outcome.status is not Status.SUCCEEDED:
            state = "not finished" if outcome is None else outcome.status.value
            raise KeyError(f"asset {name!r} has no value in run {self._run_id!r}: {state}")
        if outcome.value is _NOT_LOADED:
            outcome.value = await self._load(self._pipeline[name], outcome)
        return outcome.value

    async def materialize(self, names: Iterable[str]) -> dict[str, AssetOutcome]:
        """Materialize ``names`` with their upstream inside this run (see ``RunHandle``)."""
        wanted = self._pipeline.resolve(list(names))
        closure = self._pipeline.upstream(wanted, include_self=True, scheduled_only=True)
        self._preflight(closure)
        await self._schedule(closure)
        outcomes: dict[str, AssetOutcome] = {}
        for name in wanted:
            outcome = self._outcomes.get(name)
            if outcome is None:  # cancelled elsewhere while this caller waited
                outcome = self._cancelled.get(name) or AssetOutcome(
                    name, Status.SKIPPED, reason="cancelled"
                )
            elif outcome.value is _NOT_LOADED:
                outcome.value = await self._load(self._pipeline[name], outcome)
            outcomes[name] = outcome
        return outcomes

    # -- execution -------------------------------------------------------------------

    async def execute(self) -> MaterializeResult:
        """Run the selection to the end and return the result (raising is the caller's)."""
        runtime = self._runtime
        if self._with_deps:
            closure = self._pipeline.upstream(
                self._selection, include_self=True, scheduled_only=True
            )
        else:
            closure = list(self._selection)
        self._partition = canonical_partition(
            map(self._pipeline.__getitem__, closure), self._partition
        )
        self._preflight(closure)
        started = perf_counter()
        run, created = await runtime.store.create_run(
            RunRecord(
                run_id=self._run_id,
                pipeline=self._pipeline.name,
                selection=tuple(self._selection),
                partition=self._partition,
                status=RunStatus.RUNNING,
                started_at=_now(),
            )
        )
        resumed = not created
        if resumed:
            if run.partition != self._partition:
                raise PartitionError(
                    None,
                    self._partition,
                    f"run {self._run_id!r} was started for partition {run.partition!r}; "
                    "a resumed run keeps its partition",
                )
            for record in await runtime.store.get_records(self._run_id):
                if record.status is Status.SUCCEEDED:
                    self._previous[record.asset] = record
        if self._sinks:
            self.emit(
                RunStarted(
                    run_id=self._run_id,
                    selection=tuple(self._selection),
                    partition=self._partition,
                    resumed=resumed,
                )
            )
        status = RunStatus.FAILED
        try:
            try:
                await self._schedule(closure)
            except BaseExceptionGroup as group:
                # Errors the run cannot go on with (a store that failed, say) reach the
                # caller as themselves, not wrapped by the task group that ran the assets.
                first = _first_error(group)
                if first is None:
                    raise
                raise first  # noqa: B904 - the group stays its context
            for name in self._selection:
                outcome = self._outcomes.get(name)
                if outcome is not None and outcome.value is _NOT_LOADED:
                    outcome.value = await self._load(self._pipeline[name], outcome)
            failed = any(o.status is Status.FAILED for o in self._outcomes.values())
            status = RunStatus.FAILED if failed else RunStatus.SUCCEEDED
        except _cancelled():
            status = RunStatus.CANCELLED
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await runtime.store.finish_run(self._run_id, status, _now())
                if self._sinks:
                    self.emit(
                        RunFinished(
                            run_id=self._run_id,
                            status=status.value,
                            duration=perf_counter() - started,
                            succeeded=self._names(Status.SUCCEEDED),
                            failed=self._names(Status.FAILED),
                            skipped=self._names(Status.SKIPPED),
                        )
                    )
        return MaterializeResult(
            run_id=self._run_id,
            status=status,
            selection=tuple(self._selection),
            partition=self._partition,
            duration=perf_counter() - started,
            outcomes={**self._cancelled, **self._carried_over(), **self._outcomes},
            resumed=resumed,
        )

    def _carried_over(self) -> dict[str, AssetOutcome]:
        """What succeeded earlier in a resumed run and was not touched again (the branches
        of a reused parallel asset, say): their stored records, so the result lists them."""
        return {
            name: AssetOutcome(
                name,
                Status.SUCCEEDED,
                _NOT_LOADED,
                record=record.replace(reused=True),
                data_version=record.data_version,
            )
            for name, record in self._previous.items()
            if name not in self._outcomes and name in self._pipeline
        }

    def _names(self, status: Status) -> tuple[str, ...]:
        return tuple(n for n, o in self._outcomes.items() if o.status is status)

    def _preflight(self, names: Iterable[str]) -> None:
        """Fail before anything runs: bad partitions, unknown IO managers or coordinators."""
        runtime = self._runtime
        for name in names:
            asset_def = self._pipeline[name]
            runtime.io_manager_for(asset_def)
            if asset_def.kind != "asset":
                runtime.coordinators.get(asset_def.kind)
            definition = asset_def.partitions
            if definition is None:
                continue
            if self._partition is None:
                raise PartitionError(name, None, "the asset is partitioned; pass partition=...")
            definition.validate(self._partition, asset=name)

    def _partition_of(self, asset_def: AssetDef[..., Any]) -> str | None:
        return self._partition if asset_def.partitions is not None else None

    async def _schedule(self, closure: list[str]) -> None:
        """Run each asset of ``closure`` once its scheduled dependencies in it are done."""
        pipeline = self._pipeline
        await run_ready_queue(closure, lambda name: pipeline[name].scheduled_deps, self)

    # -- AssetRunner (the ready queue's view of the run) -----------------------------

    def is_done(self, name: str) -> bool:
        """Whether ``name`` has its outcome in this run."""
        return name in self._outcomes

    def claim(self, name: str) -> bool:
        """Mark ``name`` as running here, unless a nested materialization runs it."""
        if name in self._running:
            return False
        self._running.add(name)
        return True

    async def await_other(self, name: str) -> None:
        """Wait for ``name``, which another part of the run computes, to have its outcome."""
        if name not in self._outcomes:
            event = self._waiters.get(name)
            if event is None:
                event = self._waiters[name] = anyio.Event()
            await event.wait()
            if name not in self._outcomes:  # its computation was cancelled by its owner
                self._outcomes[name] = self._cancelled.get(name) or AssetOutcome(
                    name, Status.SKIPPED, reason="cancelled"
                )

    def abandon(self, name: str) -> None:
        """Record the claimed ``name``, which never started, as cancelled."""
        asset_def = self._pipeline[name]
        # Not a final outcome: a later part of the run (a retried parallel branch, say)
        # may run it again. The result shows it as cancelled unless it runs again.
        self._cancelled[name] = AssetOutcome(
            name,
            Status.SKIPPED,
            reason="cancelled",
            record=MaterializationRecord(
                run_id=self._run_id,
                asset=name,
                partition=self._partition_of(asset_def),
                status=Status.SKIPPED,
                ended_at=_now(),
                error="cancelled",
                code_version=asset_def.code_version,
            ),
        )
        self._running.discard(name)
        event = self._waiters.pop(name, None)
        if event is not None:
            event.set()

    def _done(self, name: str, outcome: AssetOutcome) -> None:
        self._outcomes[name] = outcome
        self._running.discard(name)
        event = self._waiters.pop(name, None)
        if event is not None:
            event.set()

    async def run_asset(self, name: str, release: Callable[[str], None]) -> bool:
        """Materialize the claimed ``name``; ``False`` when its dependents were released
        while its record was written (see :meth:`_release`)."""
        asset_def = self._pipeline[name]
        self._finishers[name] = release
        try:
            if self._limiter is not None:
                async with self._limiter:
                    outcome = await self._materialize_asset(asset_def)
            else:
                outcome = await self._materialize_asset(asset_def)
        except _cancelled():
            self.abandon(name)
            raise
        finally:
            self._finishers.pop(name, None)
        if name in self._released:
            # Its dependents went ahead while its record was written; when that failed,
            # it failed (the store refuses their records too).
            if outcome.status is not Status.SUCCEEDED:
                self._outcomes[name] = outcome
            return False
        self._done(name, outcome)
        return True

    def _release(self, name: str, outcome: AssetOutcome) -> None:
        """Let the dependents of ``name`` start with its value before its record is durable
        (the store writes theirs after it, and none of them if it fails)."""
        finished = self._finishers.pop(name, None)
        if finished is None:
            return
        self._released.add(name)
        self._done(name, outcome)
        finished(name)

    # -- one asset -------------------------------------------------------------------

    async def _materialize_asset(self, asset_def: AssetDef[..., Any]) -> AssetOutcome:
        partition = self._partition_of(asset_def)
        inputs: dict[str, Any] = {}
        versions: dict[str, str] = {}
        try:
            for param, dep in asset_def.inputs.items():
                present, value, version, reason = await self._input(asset_def, dep)
                if present:
                    inputs[param] = value
                    versions[dep] = version
                elif dep in asset_def.optional:
                    inputs[param] = asset_def.defaults.get(param)
                else:
                    return await self._skip(asset_def, partition, reason)
            for dep in asset_def.ordering_deps:
                if dep not in self._pipeline:
                    continue
                outcome = self._outcomes.get(dep)
                if outcome is None:
                    present, _, version, reason = await self._input(asset_def, dep)
                    if present:
                        versions[dep] = version
                    elif dep not in asset_def.optional:
                        return await self._skip(asset_def, partition, reason)
                elif outcome.status is not Status.SUCCEEDED and dep not in asset_def.optional:
                    return await self._skip(
                        asset_def, partition, f"input {dep!r} {outcome.status.value}"
                    )
                elif outcome.data_version is not None:
                    versions[dep] = outcome.data_version
        except MissingInputError as exc:
            return await self._fail(asset_def, partition, exc, attempts=0, started=_now(), raw=exc)

        version = data_version(asset_def.code_version, partition, versions)
        reused = await self._reusable(asset_def, partition, version)
        if reused is not None:
            return reused
        return await self._compute(asset_def, partition, inputs, versions, version)

    async def _input(self, asset_def: AssetDef[..., Any], dep: str) -> tuple[bool, Any, str, str]:
        """(present, value, version, reason-if-absent) of one input."""
        outcome = self._outcomes.get(dep)
        if outcome is not None:
            if outcome.status is Status.SUCCEEDED:
                if outcome.value is _NOT_LOADED:
                    outcome.value = await self._load(self._pipeline[dep], outcome)
                return True, outcome.value, outcome.data_version or "", ""
            return False, None, "", f"input {dep!r} {outcome.status.value}"
        # Not part of this run: take the current stored value.
        if dep not in self._pipeline:
            return False, None, "", f"input {dep!r} is not in the pipeline"
        dep_def = self._pipeline[dep]
        dep_partition = self._partition_of(dep_def)
        record = await self._runtime.store.latest(dep, dep_partition)
        if record is None:
            if dep in asset_def.optional:
                return False, None, "", f"input {dep!r} has no stored value"
            raise MissingInputError(
                asset_def.name,
                dep,
                dep_partition,
                "it has never been materialized; materialize it first or use with_deps=True",
            )
        try:
            value = await self._runtime.io_manager_for(dep_def).load(
                IOContext(dep, dep_partition, self._run_id, dep_def.metadata, dep_def)
            )
        except ValueNotFoundError:
            if dep in asset_def.optional:
                return False, None, "", f"input {dep!r} has no stored value"
            raise MissingInputError(
                asset_def.name, dep, dep_partition, "its record exists but its value is gone"
            ) from None
        return True, value, record.data_version or "", ""

    async def _load(self, asset_def: AssetDef[..., Any], outcome: AssetOutcome) -> Any:
        return await self._runtime.io_manager_for(asset_def).load(
            IOContext(
                asset_def.name,
                self._partition_of(asset_def),
                self._run_id,
                asset_def.metadata,
                asset_def,
            )
        )

    async def _reusable(
        self, asset_def: AssetDef[..., Any], partition: str | None, version: str
    ) -> AssetOutcome | None:
        """A current stored value is reused: by a resumed run, or for an upstream asset."""
        if self._force:
            return None
        previous = self._previous.get(asset_def.name)
        if asset_def.owned_deps:
            # Its value depends on assets it materializes itself: only a resumed run that
            # finished it with the same code reuses it (its branches are reused if current).
            if previous is None or previous.code_version != asset_def.code_version:
                return None
            version = previous.data_version or version
        elif previous is None or previous.data_version != version:
            if asset_def.name in self._selected:
                return None
            previous = await self._runtime.store.latest(asset_def.name, partition)
            if previous is None or previous.data_version != version:
                return None
        io = self._runtime.io_manager_for(asset_def)
        if not await io.exists(
            IOContext(asset_def.name, partition, self._run_id, asset_def.metadata, asset_def)
        ):
            return None
        now = _now()
        record = MaterializationRecord(
            run_id=self._run_id,
            asset=asset_def.name,
            partition=partition,
            status=Status.SUCCEEDED,
            attempts=0,
            started_at=now,
            ended_at=now,
            metadata=previous.metadata,
            code_version=asset_def.code_version,
            data_version=version,
            input_versions=previous.input_versions,
            io_manager=previous.io_manager,
            reused=True,
        )
        if previous.run_id == self._run_id:
            record = previous.replace(reused=True)
        outcome = AssetOutcome(
            asset_def.name, Status.SUCCEEDED, _NOT_LOADED, record=record, data_version=version
        )
        if previous.run_id != self._run_id:
            await self._save_succeeded(asset_def.name, record, outcome)
        if self._sinks:
            self.emit(
                AssetSucceeded(
                    run_id=self._run_id, asset=asset_def.name, partition=partition, reused=True
                )
            )
        return outcome

    async def _save_succeeded(
        self, name: str, record: MaterializationRecord, outcome: AssetOutcome
    ) -> None:
        """Save a succeeded record; with a store that writes behind the run, the asset's
        dependents start while it is written (it counts as succeeded once it is durable)."""
        begin = self._begin_save
        if begin is None:
            await self._runtime.store.save_record(record)
            return
        durable = begin(record)
        self._release(name, outcome)
        await durable

    async def _compute(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        inputs: dict[str, Any],
        versions: dict[str, str],
        version: str,
    ) -> AssetOutcome:
        runtime = self._runtime
        name = asset_def.name
        kind = asset_def.kind
        coordinator = None if kind == "asset" else runtime.coordinators.get(kind)
        retry = asset_def.retry
        timeout = asset_def.timeout
        started = _now()
        io_name = asset_def.io_manager or runtime.default_io_manager
        record = MaterializationRecord(
            run_id=self._run_id,
            asset=name,
            partition=partition,
            status=Status.RUNNING,
            attempts=1,
            started_at=started,
            code_version=asset_def.code_version,
            data_version=version,
            input_versions=versions,
            io_manager=io_name,
        )
        await runtime.store.save_record(record)
        metadata: dict[str, Any] = {}
        attempt = 1
        while True:
            context = Context(
                asset=name,
                partition=partition,
                run_id=self._run_id,
                attempt=attempt,
                resources=self.resources,
                runtime=runtime,
                metadata=metadata,
            )
            if self._sinks:
                self.emit(
                    AssetStarted(
                        run_id=self._run_id,
                        asset=name,
                        partition=partition,
                        attempt=attempt,
                        kind=kind,
                    )
                )
            invocation = Invocation(asset_def, context, inputs, self, versions)
            work = (
                invocation.call
                if coordinator is None
                else functools.partial(coordinator.execute, invocation)
            )
            try:
                if timeout is None:
                    value = await work()
                else:
                    value = await call_with_timeout(
                        timeout,
                        work,
                        functools.partial(
                            AssetTimeoutError, name, partition, self._run_id, attempt, timeout
                        ),
                    )
            except _cancelled():
                with anyio.CancelScope(shield=True):
                    await runtime.store.save_record(
                        record.replace(
                            status=Status.SKIPPED,
                            attempts=attempt,
                            ended_at=_now(),
                            error="cancelled",
                            metadata=dict(metadata),
                        )
                    )
                raise
            except SkipAsset as skip:
                return await self._skip(
                    asset_def, partition, skip.reason, record=record, metadata=metadata
                )
            except Exception as exc:
                if retry.should_retry(exc, attempt):
                    delay = retry.delay(attempt)
                    if self._sinks:
                        self.emit(
                            AssetRetried(
                                run_id=self._run_id,
                                asset=name,
                                partition=partition,
                                error=exc,
                                attempt=attempt,
                                delay=delay,
                            )
                        )
                    if delay > 0 and math.isfinite(delay):
                        await anyio.sleep(delay)
                    attempt += 1
                    continue
                return await self._fail(
                    asset_def, partition, exc, attempt, started, metadata=metadata
                )
            break

        if asset_def.owned_deps:
            # The value also depends on what the coordinator materialized itself.
            for dep in asset_def.owned_deps:
                owned = self._outcomes.get(dep)
                if owned is not None and owned.data_version is not None:
                    versions[dep] = owned.data_version
            version = data_version(asset_def.code_version, partition, versions)
        try:
            stored = await runtime.io_manager_for(asset_def).store(
                IOContext(name, partition, self._run_id, asset_def.metadata, asset_def), value
            )
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(
                    f"asset {name!r}: IO manager {io_name!r} could not store the value: {_error_text(exc)}"
                )
            )
            if error is not exc:
                error.__cause__ = exc
            return await self._fail(
                asset_def, partition, error, attempt, started, metadata=metadata
            )
        ended = _now()
        record = MaterializationRecord(
            run_id=self._run_id,
            asset=name,
            partition=partition,
            status=Status.SUCCEEDED,
            attempts=attempt,
            started_at=started,
            ended_at=ended,
            metadata={**stored, **metadata} if isinstance(stored, Mapping) else dict(metadata),
            code_version=asset_def.code_version,
            data_version=version,
            input_versions=versions,
            io_manager=io_name,
        )
        # An iterator was read by storing it: dependents load what was stored.
        kept = _NOT_LOADED if isinstance(value, Iterator) else value
        outcome = AssetOutcome(name, Status.SUCCEEDED, kept, record=record, data_version=version)
        try:
            await self._save_succeeded(name, record, outcome)
        except StorageError as exc:  # its record (or value) did not land: it failed
            return await self._fail(asset_def, partition, exc, attempt, started, metadata=metadata)
        if self._sinks:
            self.emit(
                AssetSucceeded(
                    run_id=self._run_id,
                    asset=name,
                    partition=partition,
                    duration=(ended - started).total_seconds(),
                    metadata=record.metadata,
                )
            )
        return outcome

    async def _skip(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        reason: str,
        *,
        record: MaterializationRecord | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AssetOutcome:
        now = _now()
        if record is None:
            record = MaterializationRecord(
                run_id=self._run_id,
                asset=asset_def.name,
                partition=partition,
                status=Status.SKIPPED,
                attempts=0,
                started_at=now,
                code_version=asset_def.code_version,
            )
        # A skip produced no value: no attempt counts (a routed-away asset never ran).
        meta = dict(metadata or {})
        record = record.replace(
            status=Status.SKIPPED, attempts=0, ended_at=now, error=reason, metadata=meta
        )
        await self._runtime.store.save_record(record)
        if self._sinks:
            self.emit(
                AssetSkipped(
                    run_id=self._run_id, asset=asset_def.name, partition=partition, reason=reason
                )
            )
        return AssetOutcome(asset_def.name, Status.SKIPPED, reason=reason, record=record)

    async def _fail(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        exc: Exception,
        attempts: int,
        started: datetime,
        *,
        metadata: Mapping[str, Any] | None = None,
        raw: ExecutionError | None = None,
    ) -> AssetOutcome:
        name = asset_def.name
        if raw is not None:
            error: ExecutionError = raw
        elif isinstance(exc, AssetExecutionError) and exc.asset == name:
            error = exc
        else:
            error = AssetExecutionError(name, partition, self._run_id, attempts, exc)
            error.__cause__ = exc
        record = MaterializationRecord(
            run_id=self._run_id,
            asset=name,
            partition=partition,
            status=Status.FAILED,
            attempts=attempts,
            started_at=started,
            ended_at=_now(),
            error=str(exc) if isinstance(exc, AssetExecutionError) else _error_text(exc),
            error_type=type(exc).__name__,
            metadata=dict(metadata or {}),
            code_version=asset_def.code_version,
        )
        await self._runtime.store.save_record(record)
        if self._sinks:
            self.emit(
                AssetFailed(
                    run_id=self._run_id,
                    asset=name,
                    partition=partition,
                    error=error,
                    attempt=attempts,
                )
            )
        return AssetOutcome(name, Status.FAILED, error=error, record=record)
