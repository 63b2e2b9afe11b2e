"""flowstone's benchmark suite: each workload beside a raw baseline measured in the same run.

Run it with ``make bench`` or ``python -m benchmarks [--only NAME] [--quick] [--json PATH]``.

Every module named ``benchmarks/bench_*.py`` is one group of workloads. It exposes::

    async def run(report: Report) -> None

and calls ``report(name, value, baseline, unit, note="")`` once per row. ``value`` is
flowstone's figure and ``baseline`` the raw yardstick's, in the same ``unit``. Units ending
in ``/s`` are throughputs (higher is better); every other unit is a cost (lower is better).
``report.quick`` is true under ``--quick``: a module then does fewer repetitions.

Performance is reported, not asserted: missing a target is a note in the table, never a
failure of the suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Report",
    "Row",
    "higher_is_better",
    "ratio",
]


def higher_is_better(unit: str) -> bool:
    """Whether a bigger figure in ``unit`` is better: throughputs (``.../s``) are."""
    return unit.endswith("/s")


def ratio(value: float, baseline: float, unit: str) -> float:
    """How many times flowstone's cost exceeds the baseline's (1.0 is parity, above is worse).

    ``value / baseline`` for costs, ``baseline / value`` for throughputs; ``nan`` when
    either figure is missing or not positive.
    """
    if not (math.isfinite(value) and math.isfinite(baseline)) or value <= 0 or baseline <= 0:
        return math.nan
    return baseline / value if higher_is_better(unit) else value / baseline


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table.

    :ivar module: the benchmark module that reported it (``bench_core``)
    :ivar name: the workload
    :ivar value: flowstone's figure (``nan`` for an error or a skipped module)
    :ivar baseline: the baseline's figure in the same unit (``nan`` when there is none)
    :ivar unit: the unit of both figures
    :ivar note: targets, counts, or why the row is an error
    :ivar status: ``"ok"``, ``"error"`` (the module raised) or ``"skipped"`` (not importable)
    """

    module: str
    name: str
    value: float
    baseline: float
    unit: str
    note: str = ""
    status: str = "ok"

    @property
    def better(self) -> str:
        """``"higher"`` for throughput units, ``"lower"`` for costs, ``""`` without a unit."""
        if not self.unit:
            return ""
        return "higher" if higher_is_better(self.unit) else "lower"

    @property
    def ratio(self) -> float:
        """Cost relative to the baseline (see :func:`ratio`)."""
        return ratio(self.value, self.baseline, self.unit)


class Report(Protocol):
    """What a benchmark module's ``run`` receives: call it once per row."""

    @property
    def quick(self) -> bool:
        """Whether the suite runs in ``--quick`` mode (fewer repetitions)."""
        ...

    def __call__(self, name: str, value: float, baseline: float, unit: str, note: str = "") -> None:
        """Record one row: flowstone's ``value`` beside the ``baseline``, both in ``unit``."""
        ...
