"""Executing one asset of a run: its inputs, reuse, attempts, storage and events.

:class:`AssetExecution` is the half of :class:`~flowstone._core.materializer.Run` that
materializes a single asset once the scheduler has started it: it gathers the inputs,
reuses a current stored value, or calls the function (or the asset kind's coordinator)
with retries and a timeout, stores the value and the record, and emits the events.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, cast

import anyio

from .asset_outcomes import AssetOutcomes, build_record, utc_now
from .assets import AssetDef, SkipAsset, Suspended
from .context import Context, Resources
from .errors import (
    MissingInputError,
    ValueNotFoundError,
)
from .events import (
    AssetRetried,
    AssetStarted,
    AssetSucceeded,
)
from .invocation import AssetOutcome, Invocation
from .mapped_inputs import UpstreamWaiting, mapped_input
from .protocols import IOContext
from .records import MaterializationRecord, Status
from .result import _NOT_LOADED
from .slot_constructors import slot_constructor
from .versions import data_version

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime

    from .invocation import RunHandle
    from .materializer import Run
    from .pipeline import Pipeline
    from .runtime import Runtime

__all__ = ["AssetExecution"]

_cancelled = anyio.get_cancelled_exc_class


build_started = slot_constructor(AssetStarted)


def _blocked(dep: str, outcome: AssetOutcome) -> str:
    """Why a dependent of ``dep``, whose value failed an ``error`` check, is skipped."""
    names = ", ".join(repr(c) for c in outcome.failed_checks)
    return f"input {dep!r} failed check {names}"


class AssetExecution(AssetOutcomes):
    """Materializing one asset of a run (a base of the run class, which owns the state)."""

    _runtime: Runtime
    _pipeline: Pipeline
    _run_id: str
    _partition: str | None
    _force: bool
    _selected: frozenset[str]
    _sinks: bool
    resources: Resources
    _outcomes: dict[str, AssetOutcome]
    _any_waiting: bool
    _previous: dict[str, MaterializationRecord]
    _begin_save: Callable[[MaterializationRecord], Awaitable[None]] | None

    def _partition_of(self, asset_def: AssetDef[..., Any]) -> str | None:
        return self._partition if asset_def.partitions is not None else None

    # -- one asset -------------------------------------------------------------------

    async def _materialize_asset(self, asset_def: AssetDef[..., Any]) -> AssetOutcome:
        partition = self._partition if asset_def.partitions is not None else None
        inputs: dict[str, Any] = {}
        versions: dict[str, str] = {}
        waited_on = self._waited_on(asset_def)
        if waited_on is not None:
            return await self._wait_behind(asset_def, partition, waited_on)
        mapped = asset_def.partition_mappings
        outcomes = self._outcomes
        try:
            for param, dep in asset_def.inputs.items():
                done = outcomes.get(dep)
                if (
                    done is not None
                    and done.status is Status.SUCCEEDED
                    and not done.checks
                    and done.value is not _NOT_LOADED
                    and dep not in mapped
                ):  # the common case, as _input takes it, without a coroutine
                    inputs[param] = done.value
                    versions[dep] = done.data_version or ""
                    continue
                if dep in mapped:
                    present, value, version, reason = await mapped_input(
                        cast("Run", self), asset_def, dep
                    )
                else:
                    present, value, version, reason = await self._input(asset_def, dep)
                if present:
                    inputs[param] = value
                    versions[dep] = version
                elif dep in asset_def.optional or (dep in mapped and mapped[dep].optional):
                    inputs[param] = asset_def.defaults.get(param)
                else:
                    return await self._skip(asset_def, partition, reason)
            for dep in asset_def.ordering_deps:
                if dep not in self._pipeline:
                    continue
                outcome = None if dep in mapped else self._outcomes.get(dep)
                if outcome is None:
                    present, _, version, reason = await (
                        mapped_input(cast("Run", self), asset_def, dep)
                        if dep in mapped
                        else self._input(asset_def, dep)
                    )
                    if present:
                        versions[dep] = version
                    elif dep not in asset_def.optional and not (
                        dep in mapped and mapped[dep].optional
                    ):
                        return await self._skip(asset_def, partition, reason)
                elif outcome.status is not Status.SUCCEEDED and dep not in asset_def.optional:
                    return await self._skip(
                        asset_def, partition, f"input {dep!r} {outcome.status.value}"
                    )
                elif outcome.checks and outcome.failed_checks and dep not in asset_def.optional:
                    return await self._skip(asset_def, partition, _blocked(dep, outcome))
                elif outcome.data_version is not None:
                    versions[dep] = outcome.data_version
        except UpstreamWaiting as waiting:
            return await self._wait_behind(asset_def, partition, waiting.dependency)
        except MissingInputError as exc:
            return await self._fail(
                asset_def, partition, exc, attempts=0, started=utc_now(), raw=exc
            )

        version = data_version(asset_def.code_version, partition, versions)
        name = asset_def.name
        if not self._force and (
            name in self._previous or name not in self._selected or asset_def.owned_deps
        ):  # (otherwise _reusable finds nothing to reuse)
            reused = await self._reusable(asset_def, partition, version)
            if reused is not None:
                return reused
        return await self._compute(asset_def, partition, inputs, versions, version)

    def _waited_on(self, asset_def: AssetDef[..., Any]) -> str | None:
        """The first dependency (input or ordering, optional or not) that waits in this run."""
        if not self._any_waiting:  # (the common case: nothing waits, nothing to look up)
            return None
        outcomes = self._outcomes
        waiting = Status.WAITING
        for deps in (asset_def.inputs.values(), asset_def.ordering_deps):
            for dep in deps:
                outcome = outcomes.get(dep)
                if outcome is not None and outcome.status is waiting:
                    return dep
        return None

    async def _input(self, asset_def: AssetDef[..., Any], dep: str) -> tuple[bool, Any, str, str]:
        """(present, value, version, reason-if-absent) of one input."""
        outcome = self._outcomes.get(dep)
        if outcome is not None:
            if outcome.status is Status.SUCCEEDED:
                if outcome.checks and outcome.failed_checks:
                    return False, None, "", _blocked(dep, outcome)
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
        now = utc_now()
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
                    run_id=self._run_id,
                    asset=asset_def.name,
                    partition=partition,
                    reused=True,
                    data_version=version,
                )
            )
        return outcome

    async def _compute(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        inputs: dict[str, Any],
        versions: dict[str, str],
        version: str,
    ) -> AssetOutcome:
        """Run the asset (with its retries), store its value and record it succeeded."""
        runtime = self._runtime
        started = utc_now()
        io_name = asset_def.io_manager or runtime.default_io_manager
        record = build_record(
            run_id=self._run_id,
            asset=asset_def.name,
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
        ran = await self._attempts(
            asset_def, partition, inputs, versions, record, started, metadata
        )
        if isinstance(ran, AssetOutcome):  # failed, skipped or suspended
            return ran
        value, attempt = ran
        if asset_def.owned_deps:
            # The value also depends on what the coordinator materialized itself.
            for dep in asset_def.owned_deps:
                owned = self._outcomes.get(dep)
                if owned is not None and owned.data_version is not None:
                    versions[dep] = owned.data_version
            version = data_version(asset_def.code_version, partition, versions)
        return await self._store_value(
            asset_def, partition, value, versions, version, attempt, started, metadata, io_name
        )

    async def _attempts(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        inputs: dict[str, Any],
        versions: dict[str, str],
        record: MaterializationRecord,
        started: datetime,
        metadata: dict[str, Any],
    ) -> tuple[Any, int] | AssetOutcome:
        """Call the asset (or its coordinator) until an attempt returns, retrying as its
        ``retry`` says; return the value and the attempt, or the outcome of a failure, a
        skip or a suspension."""
        runtime = self._runtime
        name = asset_def.name
        kind = asset_def.kind
        coordinator = None if kind == "asset" else runtime.coordinators.get(kind)
        retry = asset_def.retry
        timeout = asset_def.timeout
        spec = asset_def.kind_spec
        if spec is not None and spec.applies_own_timeout:
            timeout = None  # the coordinator applies it to the part that counts
        # The run class, whose half this is, is the coordinators' RunHandle.
        run = cast("RunHandle", self)
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
                pipeline=self._pipeline.name,
            )
            if self._sinks:
                self.emit(
                    build_started(
                        run_id=self._run_id,
                        asset=name,
                        partition=partition,
                        attempt=attempt,
                        kind=kind,
                    )
                )
            invocation = Invocation(asset_def, context, inputs, run, versions)
            work = (
                invocation.call
                if coordinator is None
                else functools.partial(coordinator.execute, invocation)
            )
            try:
                if timeout is None:  # (the common case, without a coroutine more)
                    return await work(), attempt
                return await invocation.within_timeout(work, timeout), attempt
            except _cancelled():
                with anyio.CancelScope(shield=True):
                    await runtime.store.save_record(
                        record.replace(
                            status=Status.SKIPPED,
                            attempts=attempt,
                            ended_at=utc_now(),
                            error="cancelled",
                            metadata=dict(metadata),
                        )
                    )
                raise
            except Suspended as suspended:
                return await self._suspend(asset_def, suspended, record, attempt, metadata)
            except SkipAsset as skip:
                return await self._skip(
                    asset_def, partition, skip.reason, record=record, metadata=metadata
                )
            except Exception as exc:
                if not retry.should_retry(exc, attempt):
                    return await self._fail(
                        asset_def, partition, exc, attempt, started, metadata=metadata
                    )
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
