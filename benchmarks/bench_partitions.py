"""Partition mappings: a weekly asset over seven daily partitions, beside seven identity
dependencies.

Both runs materialize eight trivial assets' worth of work on an open in-memory runtime:

* ``weekly over 7 daily partitions``: ``weekly`` (``WeeklyPartitions``) reads ``daily``
  (``DailyPartitions``) through ``TimeWindowMapping()``: the run materializes the week's
  seven days, then the week;
* the baseline: ``join`` (weekly) reads seven weekly assets ``d0`` … ``d6`` at its own
  partition (identity dependencies, scheduled by the run as usual).

Each is measured recomputing everything (``force=True``) and reusing the seven stored
upstream values (the selected asset alone computes). The target is at most 1.2x. Two
more rows compare with seven *unpartitioned* dependencies, which skip the checks of
partition keys that every partitioned run makes.
"""

from __future__ import annotations

import inspect
from time import perf_counter
from typing import TYPE_CHECKING, Any

import flowstone as fs

if TYPE_CHECKING:
    from . import Report

__all__ = ["TARGET", "run"]

#: The target: the mapped run costs at most this multiple of the identity run.
TARGET = 1.2
WEEK = "2025-01-06"


DAYS = fs.DailyPartitions(start="2025-01-01", end="2025-03-01")
WEEKS = fs.WeeklyPartitions(start="2025-01-06", end="2025-03-03")


def mapped_pipeline() -> fs.Pipeline:
    """``daily`` → ``weekly`` through a time-window mapping."""
    days, weeks = DAYS, WEEKS

    @fs.asset(partitions=days)
    async def daily() -> int:
        return 1

    @fs.asset(partitions=weeks, deps_partitions={"daily": fs.TimeWindowMapping()})
    async def weekly(daily: dict[str, int]) -> int:
        return sum(daily.values())

    return fs.Pipeline([daily, weekly])


def identity_pipeline(partitions: fs.PartitionsDefinition | None = WEEKS) -> fs.Pipeline:
    """``join`` over seven identity dependencies ``d0`` … ``d6``, all weekly (or all
    unpartitioned, with ``partitions=None``)."""

    async def one() -> int:
        return 1

    deps = [fs.asset(name=f"d{i}", partitions=partitions)(one) for i in range(7)]

    async def join(**inputs: int) -> int:
        return sum(inputs.values())

    join.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # read by inspect
        [inspect.Parameter(f"d{i}", inspect.Parameter.KEYWORD_ONLY) for i in range(7)]
    )
    return fs.Pipeline([*deps, fs.asset(name="join", partitions=partitions)(join)])


async def _time(
    runtime: fs.Runtime, pipeline: fs.Pipeline, select: str, partition: str | None, **kw: Any
) -> float:
    result = await runtime.materialize(pipeline, select, partition=partition, **kw)
    assert result[select] == 7
    started = perf_counter()
    await runtime.materialize(pipeline, select, partition=partition, **kw)
    return perf_counter() - started


async def measure(repeat: int, *, force: bool, partitioned: bool = True) -> tuple[float, float]:
    """Best time of one mapped run and of one identity run, in seconds."""
    mapped = mapped_pipeline()
    identity = identity_pipeline(WEEKS if partitioned else None)
    key = WEEK if partitioned else None
    best_mapped = best_identity = float("inf")
    async with fs.Runtime() as runtime:
        for _ in range(repeat):
            best_mapped = min(
                best_mapped, await _time(runtime, mapped, "weekly", WEEK, force=force)
            )
            best_identity = min(
                best_identity, await _time(runtime, identity, "join", key, force=force)
            )
    return best_mapped, best_identity


async def run(report: Report) -> None:
    """Report the mapped run beside the identity run, recomputing and reusing."""
    repeat = 20 if report.quick else 200
    for force, what in ((True, "all recomputed"), (False, "upstream reused")):
        mapped, identity = await measure(repeat, force=force)
        ratio = mapped / identity
        verdict = "met" if ratio <= TARGET else "MISSED"
        report(
            f"weekly over 7 daily partitions, {what} (baseline: 7 identity deps)",
            mapped * 1e6,
            identity * 1e6,
            "µs/run",
            f"{ratio:.2f}x; target <= {TARGET:g}x: {verdict}",
        )
    for force, what in ((True, "all recomputed"), (False, "upstream reused")):
        mapped, identity = await measure(repeat, force=force, partitioned=False)
        ratio = mapped / identity
        report(
            f"weekly over 7 daily partitions, {what} (baseline: 7 unpartitioned deps)",
            mapped * 1e6,
            identity * 1e6,
            "µs/run",
            f"{ratio:.2f}x; for comparison: unpartitioned assets check no partition keys",
        )
