"""The materializer: executes one run of a pipeline selection.

One execution path, in three parts: :mod:`.scheduling` starts an asset when its last
scheduled dependency is terminal; :mod:`.asset_execution` materializes one asset (plain
assets are called there; every other kind goes to the coordinator registered for it, and
retries, timeouts, versions, records, storage and events are applied the same way to
every kind); :mod:`.versions` says which stored values are current, for the run and for
``Runtime.status`` alike. This module holds the run itself: its state, the coordinators'
:class:`~flowstone.protocols.RunHandle`, and the run's start and end.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Any, cast

import anyio

from .asset_execution import AssetExecution
from .asset_outcomes import utc_now
from .canonical_keys import canonical_partition
from .check_runner import RunChecks
from .errors import (
    PartitionError,
)
from .events import (
    RunFinished,
    RunStarted,
)
from .invocation import AssetOutcome
from .mapped_status import mapped_only
from .records import MaterializationRecord, RunRecord, RunStatus, Status
from .result import _NOT_LOADED, MaterializeResult
from .run_claims import RunClaims
from .run_tags import tagged
from .scheduling import run_ready_queue
from .versions import data_version

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from .assets import AssetDef
    from .context import Resources
    from .pipeline import Pipeline
    from .protocols import PipelinedRecordStore
    from .runtime import Runtime

__all__ = ["Run", "data_version"]

_cancelled = anyio.get_cancelled_exc_class


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


class Run(AssetExecution, RunChecks, RunClaims):
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
        new_id: bool = False,
        checks: bool = True,
    ) -> None:
        self._runtime = runtime
        self._pipeline = pipeline
        self._run_id = run_id
        #: The id was made for this run, so no run is stored under it yet.
        self._new_id = new_id
        self._partition = partition
        self._selection = selection
        self._selected = frozenset(selection)
        self._force = force
        self._with_deps = with_deps
        self.resources = resources
        self._limiter = anyio.CapacityLimiter(max_concurrent) if max_concurrent else None
        self._outcomes: dict[str, AssetOutcome] = {}
        self._any_waiting = False
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
        self._checks_on = checks and bool(pipeline.checks)
        self._check_group = None
        # The run of the selection, and its parts that materialize other partitions (the
        # upstream partitions of a dependency read through a partition mapping).
        self._root = self
        self._partition_runs: dict[str | None, Run] = {}
        # Assets the selection reads only through partition mappings (never at its key).
        self._elsewhere: set[str] = set()

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

    @property
    def with_deps(self) -> bool:
        """Whether missing upstream values are materialized in the run."""
        return self._with_deps

    def partition_of(self, asset_def: AssetDef[..., Any]) -> str | None:
        """The partition of ``asset_def`` this (part of the) run materializes."""
        return self._partition_of(asset_def)

    def partition_run(self, key: str | None, asset: str) -> Run:
        """The part of this run that materializes partition ``key`` of ``asset`` (made on
        first use; the run itself for its own partition of an asset of its closure).

        It shares the run's id, resources and options; its records are the run's records,
        for their own partition. ``max_concurrent`` does not bound it: the asset that reads
        these partitions holds a slot while it waits for them.
        """
        root = self._root
        if key == root._partition and asset not in root._elsewhere:
            return root
        part = root._partition_runs.get(key)
        if part is None:
            part = Run(
                self._runtime,
                self._pipeline,
                run_id=self._run_id,
                partition=key,
                selection=[],
                force=self._force,
                with_deps=True,
                resources=self.resources,
                max_concurrent=None,
            )
            part._root = root
            root._partition_runs[key] = part
        return part

    def outcome_or_cancelled(self, name: str) -> AssetOutcome:
        """The outcome of ``name`` here, or its cancellation when it has none."""
        outcome = self._outcomes.get(name)
        if outcome is None:
            outcome = self._cancelled.get(name) or AssetOutcome(
                name, Status.SKIPPED, reason="cancelled"
            )
        return outcome

    def outcome(self, name: str) -> AssetOutcome | None:
        """The terminal outcome of ``name`` in this run, if any."""
        return self._outcomes.get(name)

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
        self._elsewhere = mapped_only(self._pipeline, self._selection)
        started = perf_counter()
        run, created = await self._create_run(
            RunRecord(
                run_id=self._run_id,
                pipeline=self._pipeline.name,
                selection=tuple(self._selection),
                partition=self._partition,
                status=RunStatus.RUNNING,
                started_at=utc_now(),
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
                if record.status is Status.SUCCEEDED and record.asset not in self._elsewhere:
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
                if self._checks_on:
                    # Checks that block nothing run here while the run goes on.
                    async with anyio.create_task_group() as checks_group:
                        self._check_group = checks_group
                        await self._schedule(closure)
                else:
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
            status = self._status()
        except _cancelled():
            status = RunStatus.CANCELLED
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await runtime.store.finish_run(self._run_id, status, utc_now())
                if self._sinks:
                    self.emit(
                        RunFinished(
                            run_id=self._run_id,
                            status=status.value,
                            duration=perf_counter() - started,
                            succeeded=self._names(Status.SUCCEEDED),
                            failed=self._names(Status.FAILED),
                            skipped=self._names(Status.SKIPPED),
                            waiting=self._names(Status.WAITING),
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

    async def _create_run(self, record: RunRecord) -> tuple[RunRecord, bool]:
        """Create the run's record (with the tags of the runtime's run taggers, if any)."""
        runtime = self._runtime
        if runtime.run_taggers:
            record = await tagged(runtime, record, stored=not self._new_id)
        return await runtime.store.create_run(record)

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

    def _status(self) -> RunStatus:
        """How the run ended: failed when an asset failed, else waiting when an asset
        waits (the run is resumed later), else succeeded."""
        statuses = {o.status for o in self._outcomes.values()}
        for part in self._partition_runs.values():  # upstream partitions of mapped inputs
            statuses.update(o.status for o in part._outcomes.values())
        if Status.FAILED in statuses:
            return RunStatus.FAILED
        if self._checks_on and any(o.failed_checks for o in self._outcomes.values()):
            return RunStatus.FAILED
        if Status.WAITING in statuses:
            return RunStatus.WAITING
        return RunStatus.SUCCEEDED

    def _names(self, status: Status) -> tuple[str, ...]:
        return tuple(n for n, o in self._outcomes.items() if o.status is status)

    def _preflight(self, names: Iterable[str]) -> None:
        """Fail before anything runs: bad partitions, unknown IO managers or coordinators."""
        runtime = self._runtime
        io_managers: set[str | None] = set()  # the names already found
        for name in names:
            asset_def = self._pipeline[name]
            if asset_def.io_manager not in io_managers:
                runtime.io_manager_for(asset_def)
                io_managers.add(asset_def.io_manager)
            if asset_def.kind != "asset":
                runtime.coordinators.get(asset_def.kind)
            definition = asset_def.partitions
            if definition is None:
                continue
            if self._partition is None:
                raise PartitionError(name, None, "the asset is partitioned; pass partition=...")
            definition.validate(self._partition, asset=name)

    async def _schedule(self, closure: list[str]) -> None:
        """Run each asset of ``closure`` once its scheduled dependencies in it are done."""
        pipeline = self._pipeline
        await run_ready_queue(closure, lambda name: pipeline[name].scheduled_deps, self)

    # -- AssetRunner (the ready queue's view of the run; see also RunClaims) -------------

    async def run_asset(self, name: str, release: Callable[[str], None]) -> bool:
        """Materialize the claimed ``name``; ``False`` when its dependents were released
        while its record was written (see :meth:`_release`)."""
        asset_def = self._pipeline[name]
        # Only a store that writes records behind the run releases dependents early.
        behind = self._begin_save is not None
        if behind:
            self._finishers[name] = release
        try:
            if self._limiter is not None:
                async with self._limiter:
                    outcome = await self._materialize_asset(asset_def)
            else:
                outcome = await self._materialize_asset(asset_def)
            if self._checks_on:
                await self._check_asset(asset_def, outcome)
        except _cancelled():
            self.abandon(name)
            raise
        finally:
            if behind:
                self._finishers.pop(name, None)
        if name in self._released:
            # Its dependents went ahead while its record was written; when that failed,
            # it failed (the store refuses their records too).
            if outcome.status is not Status.SUCCEEDED:
                self._outcomes[name] = outcome
                self._any_waiting = self._any_waiting or outcome.status is Status.WAITING
            return False
        self._done(name, outcome)
        return True

    def _release(self, name: str, outcome: AssetOutcome) -> None:
        """Let the dependents of ``name`` start with its value before its record is durable
        (the store writes theirs after it, and none of them if it fails)."""
        if self._checks_on and self._blocking_checks(name):
            return  # its dependents wait for its checks
        finished = self._finishers.pop(name, None)
        if finished is None:
            return
        self._released.add(name)
        self._done(name, outcome)
        finished(name)
