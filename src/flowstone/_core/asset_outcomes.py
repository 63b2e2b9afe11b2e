"""How one asset's execution ends: stored and succeeded, skipped, waiting, or failed.

:class:`AssetOutcomes` is the part of :class:`~flowstone._core.asset_execution.AssetExecution`
(and so of the run class) that turns an ending into its outcome: it stores the value
through the asset's IO manager, saves the asset's terminal record (behind the run when the
store writes records behind), emits the asset's event, and returns the
:class:`~flowstone._core.invocation.AssetOutcome` the scheduler acts on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .assets import Suspended
from .errors import AssetExecutionError, ExecutionError, StorageError
from .events import AssetFailed, AssetSkipped, AssetSucceeded, AssetWaiting, Event
from .invocation import AssetOutcome
from .protocols import IOContext
from .records import MaterializationRecord, Status
from .result import _NOT_LOADED
from .slot_constructors import slot_constructor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .assets import AssetDef
    from .runtime import Runtime

__all__ = ["AssetOutcomes", "error_text", "utc_now"]


# The per-asset objects, built without a setattr call per field (see slot_constructors).
build_record = slot_constructor(MaterializationRecord)
build_io_context = slot_constructor(IOContext)
build_succeeded = slot_constructor(AssetSucceeded)


#: Types whose values are never iterators (the check against the ABC is skipped for them).
_NEVER_ITERATORS = frozenset({int, float, str, bytes, bool, type(None), dict, list, tuple})


def error_text(error: BaseException) -> str:
    """How an error is written in a record: its type and message."""
    return f"{type(error).__name__}: {error}"


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class AssetOutcomes:
    """Ending one asset's execution (a base of the run class, which owns the state)."""

    _runtime: Runtime
    _run_id: str
    _sinks: bool
    _begin_save: Callable[[MaterializationRecord], Awaitable[None]] | None

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to the runtime's event sinks."""
        self._runtime.emit(event)

    def _release(self, name: str, outcome: AssetOutcome) -> None:
        """Let the dependents of ``name`` start before its record is durable (the run
        class schedules them)."""
        raise NotImplementedError

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

    async def _store_value(
        self,
        asset_def: AssetDef[..., Any],
        partition: str | None,
        value: Any,
        versions: dict[str, str],
        version: str,
        attempt: int,
        started: datetime,
        metadata: dict[str, Any],
        io_name: str,
    ) -> AssetOutcome:
        """Store the value through the asset's IO manager and save its succeeded record;
        a value or record that does not land fails the asset."""
        runtime = self._runtime
        name = asset_def.name
        try:
            stored = await runtime.io_manager_for(asset_def).store(
                build_io_context(
                    asset=name,
                    partition=partition,
                    run_id=self._run_id,
                    metadata=asset_def.metadata,
                    definition=asset_def,
                ),
                value,
            )
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(
                    f"asset {name!r}: IO manager {io_name!r} could not store the value: {error_text(exc)}"
                )
            )
            if error is not exc:
                error.__cause__ = exc
            return await self._fail(
                asset_def, partition, error, attempt, started, metadata=metadata
            )
        ended = utc_now()
        record = build_record(
            run_id=self._run_id,
            asset=name,
            partition=partition,
            status=Status.SUCCEEDED,
            attempts=attempt,
            started_at=started,
            ended_at=ended,
            metadata=(
                {**stored, **metadata}
                if stored is not None and isinstance(stored, Mapping)
                else dict(metadata)
            ),
            code_version=asset_def.code_version,
            data_version=version,
            input_versions=versions,
            io_manager=io_name,
        )
        # An iterator was read by storing it: dependents load what was stored.
        kept = value
        if type(value) not in _NEVER_ITERATORS and isinstance(value, Iterator):
            kept = _NOT_LOADED
        outcome = AssetOutcome(name, Status.SUCCEEDED, kept, record=record, data_version=version)
        try:
            if self._begin_save is None:  # (the common case, without a coroutine more)
                await runtime.store.save_record(record)
            else:
                await self._save_succeeded(name, record, outcome)
        except StorageError as exc:  # its record (or value) did not land: it failed
            return await self._fail(asset_def, partition, exc, attempt, started, metadata=metadata)
        if self._sinks:
            self.emit(
                build_succeeded(
                    run_id=self._run_id,
                    asset=name,
                    partition=partition,
                    duration=(ended - started).total_seconds(),
                    metadata=record.metadata,
                    data_version=version,
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
        now = utc_now()
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

    async def _suspend(
        self,
        asset_def: AssetDef[..., Any],
        suspended: Suspended,
        record: MaterializationRecord,
        attempt: int,
        metadata: Mapping[str, Any],
    ) -> AssetOutcome:
        """Record the asset as waiting (its coordinator suspended it)."""
        details: dict[str, Any] = {**metadata, **suspended.metadata}
        if suspended.since is not None:
            details["waiting_since"] = suspended.since.isoformat()
        if suspended.until is not None:
            details["waiting_until"] = suspended.until.isoformat()
        record = record.replace(
            status=Status.WAITING,
            attempts=attempt,
            error=suspended.reason,
            metadata=details,
        )
        await self._runtime.store.save_record(record)
        if self._sinks:
            self.emit(
                AssetWaiting(
                    run_id=self._run_id,
                    asset=asset_def.name,
                    partition=record.partition,
                    reason=suspended.reason,
                    since=suspended.since,
                    until=suspended.until,
                )
            )
        return AssetOutcome(asset_def.name, Status.WAITING, reason=suspended.reason, record=record)

    async def _wait_behind(
        self, asset_def: AssetDef[..., Any], partition: str | None, dep: str
    ) -> AssetOutcome:
        """Record the asset as waiting for ``dep``, which waits in this run."""
        record = MaterializationRecord(
            run_id=self._run_id,
            asset=asset_def.name,
            partition=partition,
            status=Status.WAITING,
            attempts=0,
            started_at=utc_now(),
            code_version=asset_def.code_version,
        )
        return await self._suspend(asset_def, Suspended(f"input {dep!r} waiting"), record, 0, {})

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
            ended_at=utc_now(),
            error=str(exc) if isinstance(exc, AssetExecutionError) else error_text(exc),
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
