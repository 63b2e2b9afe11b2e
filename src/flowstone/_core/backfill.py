"""Backfills: materialize a selection for many partitions, past failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .canonical_keys import canonical_partition
from .dynamic_partitions import refresh_dynamic_partitions
from .errors import FlowstoneError
from .mapped_status import in_scope
from .partitions import PartitionsDefinition, partition_keys
from .pipeline import as_pipeline
from .records import RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .result import MaterializeResult
    from .runtime import Runtime

__all__ = ["BackfillResult", "PartitionOutcome", "backfill_with"]


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """How one partition of a backfill ended.

    :ivar status: ``"succeeded"``, ``"failed"``, ``"waiting"`` (an asset was suspended:
        resume the partition's ``run_id`` to finish it) or ``"skipped"`` (already current:
        every selected asset ``current`` or ``skipped`` in :meth:`Runtime.status`)
    """

    partition: str
    status: str
    run_id: str | None = None
    error: BaseException | None = None
    result: MaterializeResult | None = None


@dataclass(frozen=True, slots=True)
class BackfillResult:
    """Counts and per-partition outcomes of a backfill."""

    outcomes: Mapping[str, PartitionOutcome] = field(default_factory=dict)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes.values() if o.status == status)

    @property
    def succeeded(self) -> int:
        """Partitions materialized successfully."""
        return self._count("succeeded")

    @property
    def failed(self) -> int:
        """Partitions with a failed asset."""
        return self._count("failed")

    @property
    def waiting(self) -> int:
        """Partitions whose run waits (an asset was suspended)."""
        return self._count("waiting")

    @property
    def skipped(self) -> int:
        """Partitions whose selected assets were already current."""
        return self._count("skipped")

    @property
    def ok(self) -> bool:
        """Whether no partition failed and none waits."""
        return self.failed == 0 and self.waiting == 0

    def __repr__(self) -> str:
        waiting = f", {self.waiting} waiting" if self.waiting else ""
        return (
            f"<BackfillResult {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.skipped} skipped{waiting}>"
        )


async def backfill_with(
    runtime: Runtime,
    assets: Any,
    select: Any = None,
    *,
    partitions: PartitionsDefinition | Iterable[str] | str,
    max_concurrent: int = 4,
    force: bool = False,
    resources: Mapping[str, Any] | None = None,
    checks: bool = True,
) -> BackfillResult:
    """Materialize ``select`` for every partition in ``partitions`` (see ``fs.backfill``).

    Keys are made canonical first (``"2025-1-2"`` is ``"2025-01-02"``): the outcomes are
    by canonical key, and a partition given twice, written two ways, runs once.
    """
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
    pipeline = as_pipeline(assets)
    names = pipeline.resolve(select)
    await refresh_dynamic_partitions(runtime, pipeline)
    closure = in_scope(pipeline.subset(names))
    # One partition is one run, whatever way its key was written.
    keys = list(
        dict.fromkeys(
            canonical_partition(closure, key) or key for key in partition_keys(partitions)
        )
    )
    outcomes: dict[str, PartitionOutcome] = {}
    limiter = anyio.CapacityLimiter(max_concurrent)

    async def one(key: str) -> None:
        async with limiter:
            if not force:
                states = await runtime.status(pipeline.subset(names), partition=key)
                if all(states[n].settled for n in names):
                    outcomes[key] = PartitionOutcome(key, "skipped")
                    return
            try:
                result = await runtime.materialize(
                    pipeline,
                    names,
                    partition=key,
                    force=force,
                    resources=resources,
                    checks=checks,
                    raise_on_error=False,
                )
            except FlowstoneError as exc:
                outcomes[key] = PartitionOutcome(key, "failed", error=exc)
                return
            error = next(iter(result.errors.values()), None)
            status = "succeeded" if result.ok else "failed"
            if result.status is RunStatus.WAITING:
                status = "waiting"  # suspended: resume its run to finish it
            outcomes[key] = PartitionOutcome(key, status, result.run_id, error, result)

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(one, key)
    return BackfillResult({k: outcomes[k] for k in keys})
