"""Running asset checks: in a run, right after their asset, and on a stored value alone.

In a run (:class:`RunChecks`, a base of the run class), the checks of an asset run once its
value was computed. When the asset has an ``error`` check, its dependents wait for its
checks, and a failed ``error`` check blocks them: they are skipped with a reason naming the
check, and the run fails. Checks that are all ``warn`` run in the run's own task group
while the run goes on. A reused current value is not checked again: its ``error`` checks'
results recorded for that very value (its data version) stand, so a value that failed one
keeps blocking its dependents; one never recorded for it runs then.

:class:`RuntimeChecks` (a base of :class:`~flowstone.Runtime`) keeps the checks of the
pipelines the runtime has seen, runs them on a stored value (``run_checks``) and reads
their history (``check_history``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

import anyio

from .asset_outcomes import error_text, utc_now
from .assets import AssetDef
from .canonical_keys import partition_for
from .check_store import CheckStore, MemoryCheckStore
from .checks import CheckDef, CheckFailedError, CheckRecord, CheckResult
from .context import Context, Resources, _current
from .deadline import run_in_thread
from .errors import ConfigurationError, ValueNotFoundError
from .events import CheckCompleted
from .records import Status
from .result import _NOT_LOADED

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterable, Mapping, Sequence

    from anyio.abc import TaskGroup

    from .invocation import AssetOutcome
    from .pipeline import Pipeline
    from .protocols import IOManager, MaterializationStore
    from .runtime import Runtime

__all__ = ["RunChecks", "RuntimeChecks", "execute_checks"]

_cancelled = anyio.get_cancelled_exc_class

#: How many recent results of a check are searched for the verdict on a reused value.
_RECENT = 20


def _interpret(check_def: CheckDef, returned: Any) -> CheckResult:
    """A check's return value as a :class:`CheckResult`.

    :raises TypeError: it returned something else than a ``CheckResult`` or a ``bool``
    """
    if isinstance(returned, CheckResult):
        return returned
    if isinstance(returned, bool):
        return CheckResult(passed=returned)
    raise TypeError(
        f"check {check_def.name!r} returned {type(returned).__name__}, not a CheckResult or a bool"
    )


async def _execute_one(
    check_def: CheckDef,
    value: Any,
    *,
    runtime: Runtime,
    run_id: str,
    partition: str | None,
    data_version: str | None,
    resources: Resources,
    pipeline: str | None,
) -> CheckRecord:
    """Run one check on ``value``; what it raises is recorded as its failure."""
    kwargs: dict[str, Any] = {check_def.param: value}
    context: Context | None = None
    if check_def.context_param is not None:
        context = Context(
            asset=check_def.asset,
            partition=partition,
            run_id=run_id,
            resources=resources,
            runtime=runtime,
            pipeline=pipeline,
        )
        kwargs[check_def.context_param] = context
    started = utc_now()
    error: str | None = None
    error_type: str | None = None
    result = CheckResult(passed=False)
    token = _current.set(context) if context is not None else None
    try:
        if check_def.is_async:
            returned = await cast("Awaitable[Any]", check_def.fn(**kwargs))
        else:
            returned = await run_in_thread(functools.partial(check_def.fn, **kwargs))
        result = _interpret(check_def, returned)
    except _cancelled():
        raise
    except Exception as exc:
        error, error_type = error_text(exc), type(exc).__name__
    finally:
        if token is not None:
            _current.reset(token)
    metadata = dict(result.metadata)
    if result.description is not None:
        metadata.setdefault("description", result.description)
    return CheckRecord(
        run_id=run_id,
        asset=check_def.asset,
        partition=partition,
        check=check_def.name,
        severity=check_def.severity,
        passed=bool(result.passed) and error is None,
        metadata=metadata,
        started_at=started,
        ended_at=utc_now(),
        error=error,
        error_type=error_type,
        data_version=data_version,
    )


async def execute_checks(
    checks: Sequence[CheckDef],
    value: Any,
    *,
    runtime: Runtime,
    run_id: str,
    partition: str | None,
    data_version: str | None,
    resources: Resources,
    pipeline: str | None = None,
) -> tuple[CheckRecord, ...]:
    """Run ``checks`` of one value at once; save and announce each result as it ends.

    :return: the results, in the order of ``checks``
    """
    results: list[CheckRecord | None] = [None] * len(checks)
    store = runtime.check_store

    async def one(index: int, check_def: CheckDef) -> None:
        record = await _execute_one(
            check_def,
            value,
            runtime=runtime,
            run_id=run_id,
            partition=partition,
            data_version=data_version,
            resources=resources,
            pipeline=pipeline,
        )
        await store.save_check(record)
        results[index] = record
        if runtime.has_sinks:
            runtime.emit(
                CheckCompleted(
                    run_id=run_id,
                    asset=record.asset,
                    partition=partition,
                    check=record.check,
                    severity=record.severity,
                    passed=record.passed,
                    metadata=record.metadata,
                    duration=record.duration or 0.0,
                    error=record.error,
                )
            )

    if len(checks) == 1:
        await one(0, checks[0])
    else:
        async with anyio.create_task_group() as group:
            for index, check_def in enumerate(checks):
                group.start_soon(one, index, check_def)
    return tuple(r for r in results if r is not None)


def check_summary(records: Iterable[CheckRecord]) -> dict[str, dict[str, Any]]:
    """What a materialization record's ``metadata["checks"]`` keeps: each check's outcome."""
    return {
        r.check: {
            "passed": r.passed,
            "severity": r.severity,
            **({"error": r.error} if r.error else {}),
        }
        for r in records
    }


class RunChecks:
    """The checks of a run (a base of the run class, which owns the state)."""

    _runtime: Runtime
    _pipeline: Pipeline
    _run_id: str
    resources: Resources
    #: Whether this run executes checks (``materialize(..., checks=False)`` turns them off).
    _checks_on: bool
    #: Where checks that block nothing run, while the run goes on.
    _check_group: TaskGroup | None

    async def _load(self, asset_def: AssetDef[..., Any], outcome: AssetOutcome) -> Any:
        raise NotImplementedError

    def _blocking_checks(self, name: str) -> bool:
        """Whether ``name``'s dependents wait for its checks (it has an ``error`` check)."""
        return self._checks_on and any(c.blocking for c in self._pipeline.checks_of(name))

    async def _check_asset(self, asset_def: AssetDef[..., Any], outcome: AssetOutcome) -> None:
        """Run the checks of an asset that was just computed: now, when one is ``error``
        (its dependents wait), else in the run's task group. A reused value keeps the
        verdict of its ``error`` checks (see :meth:`_judge_reused`)."""
        if not self._checks_on or outcome.status is not Status.SUCCEEDED:
            return
        checks = self._pipeline.checks_of(asset_def.name)
        if not checks:
            return
        if outcome.record is not None and outcome.record.reused:
            blocking = [c for c in checks if c.blocking]
            if blocking:
                await self._judge_reused(asset_def, outcome, blocking)
            return
        if any(c.blocking for c in checks) or self._check_group is None:
            await self._run_asset_checks(asset_def, outcome, checks)
        else:
            self._check_group.start_soon(self._run_asset_checks, asset_def, outcome, checks)

    async def _judge_reused(
        self, asset_def: AssetDef[..., Any], outcome: AssetOutcome, blocking: list[CheckDef]
    ) -> None:
        """The ``error`` checks of a reused value: the results recorded for that value (its
        data version), and a run now of those never recorded for it (it was made with
        ``checks=False``, say), so a value that failed one keeps blocking its dependents."""
        record = outcome.record
        partition = record.partition if record is not None else None
        store = self._runtime.check_store
        known: list[CheckRecord] = []
        missing: list[CheckDef] = []
        for check_def in blocking:
            history = await store.check_history(
                asset_def.name, partition, check=check_def.name, limit=_RECENT
            )
            same = next((r for r in history if r.data_version == outcome.data_version), None)
            if same is None:
                missing.append(check_def)
            else:
                known.append(same)
        if missing:
            await self._run_asset_checks(asset_def, outcome, missing, save_record=False)
        outcome.checks = (*known, *outcome.checks)
        failed = tuple(r.check for r in outcome.checks if r.blocking)
        if failed:
            outcome.error = CheckFailedError(asset_def.name, partition, self._run_id, failed)

    async def _run_asset_checks(
        self,
        asset_def: AssetDef[..., Any],
        outcome: AssetOutcome,
        checks: Sequence[CheckDef],
        *,
        save_record: bool = True,
    ) -> None:
        value = outcome.value
        if value is _NOT_LOADED:  # an iterator, read by storing it: check what was stored
            value = await self._load(asset_def, outcome)
        record = outcome.record
        partition = record.partition if record is not None else None
        results = await execute_checks(
            checks,
            value,
            runtime=self._runtime,
            run_id=self._run_id,
            partition=partition,
            data_version=outcome.data_version,
            resources=self.resources,
            pipeline=self._pipeline.name,
        )
        outcome.checks = results
        failed = tuple(r.check for r in results if r.blocking)
        if failed:
            outcome.error = CheckFailedError(asset_def.name, partition, self._run_id, failed)
        if record is not None and save_record:
            record = record.replace(metadata={**record.metadata, "checks": check_summary(results)})
            outcome.record = record
            await self._runtime.store.save_record(record)


class RuntimeChecks:
    """The runtime's checks: the ones it knows, ``run_checks`` and ``check_history`` (a
    base of :class:`~flowstone.Runtime`, which builds the state)."""

    store: MaterializationStore
    resources: Resources
    _known_assets: dict[str, AssetDef[..., Any]]
    _known_checks: dict[str, dict[str, CheckDef]]
    _own_check_store: CheckStore | None

    async def _ready(self) -> None:
        raise NotImplementedError

    def io_manager_for(self, asset: AssetDef[..., Any] | str) -> IOManager:
        """The IO manager that stores ``asset``'s value."""
        raise NotImplementedError

    @property
    def check_store(self) -> CheckStore:
        """Where check results are kept: the store itself when it is a
        :class:`~flowstone.protocols.CheckStore` (``PostgresStore``), else in memory."""
        store = self.store
        if isinstance(store, CheckStore):
            return store
        if self._own_check_store is None:
            self._own_check_store = MemoryCheckStore()
        return self._own_check_store

    def _learn_checks(self, pipeline: Pipeline) -> None:
        """Remember the checks of ``pipeline`` (for ``run_checks``)."""
        for check_def in pipeline.checks:
            self._known_checks.setdefault(check_def.asset, {})[check_def.name] = check_def

    async def run_checks(
        self,
        asset: AssetDef[..., Any] | str,
        partition: str | None = None,
        *,
        checks: Iterable[CheckDef] | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> list[CheckRecord]:
        """Run the checks of ``asset`` alone, on its stored value (and ``partition``).

        The results are saved (``check_history``) and announced (``CheckCompleted``) under
        the run that materialized the value, with its data version.

        :param checks: the checks to run (default: those of the pipelines this runtime
            has materialized or registered)
        :param resources: resources for the checks' context, over the runtime's
        :return: one record per check
        :raises ConfigurationError: no check of ``asset`` is known (and none given)
        :raises ValueNotFoundError: no value of ``asset`` is stored
        :raises PartitionError: the asset is partitioned and the key is missing or invalid
        """
        await self._ready()
        name = asset.name if isinstance(asset, AssetDef) else asset
        definition = asset if isinstance(asset, AssetDef) else self._known_assets.get(name)
        chosen = (
            list(checks) if checks is not None else list(self._known_checks.get(name, {}).values())
        )
        if not chosen:
            raise ConfigurationError(
                f"no check of asset {name!r} is known to this runtime: pass checks=[...], or "
                "materialize or register a pipeline that holds its checks"
            )
        key = partition_for(definition, partition)
        latest = await self.store.latest(name, key)
        if latest is None:
            raise ValueNotFoundError(name, key)
        from .protocols import IOContext

        io = self.io_manager_for(definition if definition is not None else name)
        value = await io.load(
            IOContext(
                name, key, latest.run_id, definition.metadata if definition else {}, definition
            )
        )
        return list(
            await execute_checks(
                chosen,
                value,
                runtime=cast("Runtime", self),
                run_id=latest.run_id,
                partition=key,
                data_version=latest.data_version,
                resources=self.resources.merged(resources),
            )
        )

    async def check_history(
        self,
        asset: AssetDef[..., Any] | str,
        partition: str | None = None,
        *,
        check: CheckDef | str | None = None,
        limit: int = 100,
    ) -> list[CheckRecord]:
        """The check results of ``asset``, newest first.

        :param partition: one partition (made canonical), or ``None`` for all of them
        :param check: only this check's results
        """
        await self._ready()
        name = asset.name if isinstance(asset, AssetDef) else asset
        if partition is not None:
            definition = asset if isinstance(asset, AssetDef) else self._known_assets.get(name)
            partition = partition_for(definition, partition) or partition
        check_name = check.name if isinstance(check, CheckDef) else check
        return await self.check_store.check_history(name, partition, check=check_name, limit=limit)
