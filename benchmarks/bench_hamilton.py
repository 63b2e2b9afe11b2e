"""flowstone beside Hamilton's ``AsyncDriver`` on the same DAGs (the core workloads).

The chain of 1,000 and the wide 1 → 2,000 → 1 DAG of :mod:`benchmarks.bench_core` are built
twice: as flowstone assets, and as a Hamilton module of async functions whose parameter
names are their inputs (Hamilton's way of wiring a DAG). Each side executes the whole DAG
once per repetition, interleaved, after a warm-up; each figure is the best repetition, per
node. flowstone runs with records (the in-memory store) and events on; Hamilton with its
defaults (no adapters). The Hamilton driver is built once, outside the timing, as a user
would keep it; flowstone's runtime is opened outside the timing too (as in
:mod:`benchmarks.bench_core`, a fresh one per repetition, so its store starts empty).

Which side goes first alternates from one repetition to the next, so that neither is
always the one that runs right after the other (and inherits its garbage, its cache and
the machine's load at that moment). flowstone's figure here and in ``bench_core`` measure
the same thing the same way; on a shared machine they differ by the noise between runs,
which the best of more repetitions narrows.

Hamilton's ``AsyncDriver`` walks the DAG recursively (one Python frame per node of the
chain), so the chain of 1,000 runs close to Python's default recursion limit: it is
called here from a shallow stack, as a user's handler would call it.

Hamilton (``apache-hamilton``, a dev dependency) is needed; without it the module is listed
as skipped. Its ``value`` is flowstone's cost per asset and its ``baseline`` Hamilton's.
"""

from __future__ import annotations

import gc
import math
from time import perf_counter
from typing import TYPE_CHECKING, Any

from hamilton import ad_hoc_utils, async_driver

from .bench_core import Workload, chain, pipeline_of, run_flowstone, wide

if TYPE_CHECKING:
    import types

    from . import Report

__all__ = ["HAMILTON_TARGET", "hamilton_module", "run"]

#: The target: flowstone's cost per asset as a multiple of Hamilton's.
HAMILTON_TARGET = 0.6


def hamilton_module(workload: Workload) -> types.ModuleType:
    """The workload as a module of async functions Hamilton can build a DAG from."""
    source: list[str] = []
    for node in workload.nodes:
        params = ", ".join(f"{dep}: int" for _, dep in node.inputs)
        if not node.inputs:
            body = "0"
        elif len(node.inputs) == 1:
            body = f"{node.inputs[0][1]} + 1"
        else:
            body = "sum(({},))".format(", ".join(dep for _, dep in node.inputs))
        source.append(f"async def {node.name}({params}) -> int:\n    return {body}\n")
    # Hamilton keeps only functions whose module it can find in sys.modules.
    return ad_hoc_utils.module_from_source("\n".join(source))


async def _driver(workload: Workload) -> Any:
    module = hamilton_module(workload)
    return await async_driver.Builder().with_modules(module).build()


async def _time_hamilton(driver: Any, workload: Workload) -> float:
    started = perf_counter()
    result = await driver.execute([workload.final])
    elapsed = perf_counter() - started
    if result[workload.final] != workload.expected:
        raise RuntimeError(f"{workload.name}: Hamilton produced {result[workload.final]!r}")
    return elapsed


async def run(report: Report) -> None:
    """Report flowstone's and Hamilton's cost per asset on the chain and the wide DAG."""
    repeat = 4 if report.quick else 10
    for workload in (chain(), wide()):
        pipeline = pipeline_of(workload)
        driver = await _driver(workload)
        await run_flowstone(pipeline, workload)
        await _time_hamilton(driver, workload)
        best_fs = best_ham = math.inf
        for attempt in range(repeat):
            # Each side goes first every other repetition (see the module docstring).
            for side in ("hamilton", "flowstone") if attempt % 2 else ("flowstone", "hamilton"):
                gc.collect()
                if side == "hamilton":
                    best_ham = min(best_ham, await _time_hamilton(driver, workload))
                else:
                    elapsed, _events = await run_flowstone(pipeline, workload)
                    best_fs = min(best_fs, elapsed)
        n = len(workload.nodes)
        fs_us, ham_us = best_fs / n * 1e6, best_ham / n * 1e6
        verdict = "met" if fs_us / ham_us <= HAMILTON_TARGET else "MISSED"
        report(
            f"{workload.name} vs Hamilton AsyncDriver",
            fs_us,
            ham_us,
            "µs/asset",
            f"target <= {HAMILTON_TARGET:g}x Hamilton: {verdict}; records + events on",
        )
