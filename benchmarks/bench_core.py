"""Core benchmarks: the in-memory runtime's cost per asset and ``import flowstone``.

Workloads (each beside a raw baseline measured in the same process, interleaved with it):

- a chain of 1,000 trivial async assets;
- a wide DAG: 1 root, 2,000 children, 1 sink that takes every child as an input;
- one trivial asset per ``materialize`` call (the fixed cost of a run, for request handlers);
- ``import flowstone`` beside ``import anyio``: what the import adds to a whole interpreter
  process (``python -c "import flowstone"`` minus ``python -c pass``); flowstone's names
  load on first use, so also what loading all of them, the events and the execution layer
  (as the first run does) costs beside ``import asyncio, anyio``.

The baseline is a ready-queue scheduler on one anyio task group: a node is started when
its last dependency finishes, its inputs are passed by keyword, its value kept in a dict.
It is what a careful hand-written anyio program pays for the same wiring, and nothing more.
flowstone runs with records (the in-memory store) and events on (a counting sink, so every
event is built and delivered). Each figure is the best of several repetitions after a
warm-up.

Profile one workload with ``python -m benchmarks.bench_core --profile chain`` (or ``wide``,
``single``; ``--no-events``, ``--sort cumulative``). Mind one blind spot of ``pstats``: it
keys functions by file, line and name, and every dataclass's generated ``__init__`` is
``<string>:2(__init__)``, so all of them but one vanish from the table (their time shows
nowhere); the run's own records and events are built by named functions
(``build_MaterializationRecord``, …), which it lists.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import math
import os
import pstats
import sys
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

import anyio

import flowstone as fs

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from flowstone.events import Event

    from . import Report

__all__ = [
    "CHAIN_LENGTH",
    "IMPORT_TARGET_MS",
    "PER_ASSET_TARGET",
    "WIDE_CHILDREN",
    "CountingSink",
    "Node",
    "Workload",
    "chain",
    "main",
    "process_cost_ms",
    "process_import_ms",
    "pipeline_of",
    "run",
    "run_baseline",
    "run_flowstone",
    "single",
    "wide",
]

CHAIN_LENGTH = 1_000
WIDE_CHILDREN = 2_000
#: The per-asset target, as a multiple of the baseline's per-node cost.
PER_ASSET_TARGET = 1.5
#: The ``import flowstone`` target: milliseconds a process spends beyond ``python -c pass``.
IMPORT_TARGET_MS = 60.0


# -- workloads ---------------------------------------------------------------------------


async def _source() -> int:
    return 0


async def _step(x: int) -> int:
    return x + 1


def _gather(params: Sequence[str]) -> Callable[..., Awaitable[int]]:
    """A trivial async function whose signature names every one of ``params``."""

    async def gather(**inputs: int) -> int:
        return sum(inputs.values())

    # flowstone reads inputs from the signature; this one is built at run time.
    gather.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # honoured by inspect
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=int) for p in params]
    )
    return gather


@dataclass(frozen=True, slots=True)
class Node:
    """One node of a workload: a function and where each of its parameters comes from.

    :ivar inputs: ``(parameter, upstream node)`` pairs
    """

    name: str
    fn: Callable[..., Awaitable[int]]
    inputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Workload:
    """A DAG of trivial async functions, in dependency order, and the value it must produce.

    :ivar final: the node whose value is checked
    :ivar expected: that node's value
    """

    name: str
    nodes: tuple[Node, ...]
    final: str
    expected: int


def chain(length: int = CHAIN_LENGTH) -> Workload:
    """``a0000 -> a0001 -> ... -> a<length-1>``; each node adds one to its input."""
    names = [f"a{i:04d}" for i in range(length)]
    nodes = [Node(names[0], _source)]
    nodes += [Node(names[i], _step, (("x", names[i - 1]),)) for i in range(1, length)]
    return Workload(f"chain of {length:,} assets", tuple(nodes), names[-1], length - 1)


def wide(children: int = WIDE_CHILDREN) -> Workload:
    """``root -> c0000 … c<children-1> -> sink``; the sink sums every child's value."""
    names = [f"c{i:04d}" for i in range(children)]
    nodes = [Node("root", _source)]
    nodes += [Node(name, _step, (("x", "root"),)) for name in names]
    nodes.append(Node("sink", _gather(names), tuple((name, name) for name in names)))
    return Workload(f"wide DAG 1 -> {children:,} -> 1", tuple(nodes), "sink", children)


def single() -> Workload:
    """One trivial asset: what a run costs beyond its assets."""
    return Workload("single-asset run", (Node("only", _source),), "only", 0)


# -- the baseline ------------------------------------------------------------------------


async def run_baseline(workload: Workload) -> int:
    """Run ``workload`` on a ready-queue scheduler over one anyio task group.

    A node is started when its last dependency finishes; its inputs are passed by keyword.

    :return: the value of ``workload.final``
    """
    index = {node.name: node for node in workload.nodes}
    waiting = {node.name: len(node.inputs) for node in workload.nodes}
    children: dict[str, list[Node]] = {node.name: [] for node in workload.nodes}
    for node in workload.nodes:
        for _, dep in node.inputs:
            children[dep].append(node)
    results: dict[str, int] = {}

    async with anyio.create_task_group() as tg:

        async def execute(node: Node) -> None:
            results[node.name] = await node.fn(**{p: results[d] for p, d in node.inputs})
            for child in children[node.name]:
                left = waiting[child.name] - 1
                waiting[child.name] = left
                if not left:
                    tg.start_soon(execute, child)

        for name, count in waiting.items():
            if not count:
                tg.start_soon(execute, index[name])
    return results[workload.final]


# -- flowstone ---------------------------------------------------------------------------


class CountingSink:
    """An event sink that only counts: events are built and delivered, nothing else."""

    def __init__(self) -> None:
        self.count = 0

    def emit(self, event: Event) -> None:
        """Count the event."""
        self.count += 1


def pipeline_of(workload: Workload) -> fs.Pipeline:
    """The workload as flowstone assets (inputs mapped to parameters through ``deps``)."""
    assets = [fs.asset(name=node.name, deps=dict(node.inputs))(node.fn) for node in workload.nodes]
    return fs.Pipeline(assets, name=workload.name)


async def run_flowstone(
    pipeline: fs.Pipeline, workload: Workload, *, events: bool = True
) -> tuple[float, int]:
    """Materialize every asset of ``pipeline`` once, on a fresh in-memory runtime.

    :param events: attach a :class:`CountingSink` (records are always kept)
    :return: seconds the ``materialize`` call took, and the number of events delivered
    :raises RuntimeError: the run did not produce the workload's expected value
    """
    sink = CountingSink()
    async with fs.Runtime(event_sinks=[sink] if events else []) as runtime:
        started = perf_counter()
        result = await runtime.materialize(pipeline)
        elapsed = perf_counter() - started
    if not result.ok or result[workload.final] != workload.expected:
        raise RuntimeError(f"{workload.name}: flowstone produced a wrong result: {result!r}")
    return elapsed, sink.count


async def _time_baseline(workload: Workload) -> float:
    started = perf_counter()
    value = await run_baseline(workload)
    elapsed = perf_counter() - started
    if value != workload.expected:
        raise RuntimeError(f"{workload.name}: the baseline produced {value}")
    return elapsed


@dataclass(frozen=True, slots=True)
class _Timing:
    flowstone: float
    baseline: float
    events: int


async def _compare(workload: Workload, repeat: int, *, events: bool = True) -> _Timing:
    """Best-of-``repeat`` seconds for flowstone and the baseline, interleaved, after a warm-up."""
    pipeline = pipeline_of(workload)
    await run_flowstone(pipeline, workload, events=events)
    await _time_baseline(workload)
    best_fs = best_base = math.inf
    count = 0
    for _ in range(repeat):
        gc.collect()
        best_base = min(best_base, await _time_baseline(workload))
        gc.collect()
        elapsed, count = await run_flowstone(pipeline, workload, events=events)
        best_fs = min(best_fs, elapsed)
    return _Timing(best_fs, best_base, count)


# -- import time -------------------------------------------------------------------------


async def process_import_ms(module: str, repeat: int = 15) -> float:
    """What ``import module`` adds to a whole interpreter process, in milliseconds."""
    return await process_cost_ms(f"import {module}", repeat)


async def process_cost_ms(code: str, repeat: int = 15) -> float:
    """What running ``code`` adds to a whole interpreter process, in milliseconds.

    The best-of-``repeat`` wall time of ``python -c code`` minus the best of
    ``python -c pass``, the two interleaved, bytecode cached (warmed by one discarded run).

    :raises RuntimeError: the code failed
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    best = {"pass": math.inf, code: math.inf}
    for attempt in range(repeat + 1):
        for each in ("pass", code):
            started = perf_counter()
            process = await anyio.run_process([sys.executable, "-c", each], check=False, env=env)
            elapsed = perf_counter() - started
            if process.returncode != 0:
                raise RuntimeError(f"{each!r} failed: {process.stderr.decode()[-300:]}")
            if attempt:
                best[each] = min(best[each], elapsed)
    return (best[code] - best["pass"]) * 1000


#: Loads every public name of flowstone, its events and its execution layer: what a
#: process that runs a pipeline has imported (beside asyncio and anyio) when it runs.
EVERYTHING = (
    "import asyncio, anyio, flowstone as fs, flowstone.events, flowstone._core.materializer; "
    "[getattr(fs, name) for name in fs.__all__]"
)


# -- the suite ---------------------------------------------------------------------------


def _per_asset_note(ratio: float, events: int, runs_events: bool) -> str:
    verdict = "met" if ratio <= PER_ASSET_TARGET else "MISSED"
    target = f"target <= {PER_ASSET_TARGET:g}x baseline: {verdict}"
    if runs_events:
        return f"{target}; records + events on ({events:,} events/run)"
    return f"{target}; records on, no event sink"


async def run(report: Report) -> None:
    """Measure the core workloads and report one row each (see the module docstring)."""
    repeat = 3 if report.quick else 7
    for workload in (chain(), wide()):
        n = len(workload.nodes)
        timing = await _compare(workload, repeat)
        fs_us, base_us = timing.flowstone / n * 1e6, timing.baseline / n * 1e6
        note = _per_asset_note(fs_us / base_us, timing.events, True)
        report(workload.name, fs_us, base_us, "µs/asset", note)

    workload = chain()
    timing = await _compare(workload, repeat, events=False)
    n = len(workload.nodes)
    fs_us, base_us = timing.flowstone / n * 1e6, timing.baseline / n * 1e6
    report(
        f"{workload.name}, no event sink",
        fs_us,
        base_us,
        "µs/asset",
        _per_asset_note(fs_us / base_us, 0, False),
    )

    workload = single()
    timing = await _compare(workload, repeat * 5)
    report(
        workload.name,
        timing.flowstone * 1e6,
        timing.baseline * 1e6,
        "µs/run",
        "one materialize() call on an open runtime, records + events on",
    )

    processes = 7 if report.quick else 20
    flowstone_ms = await process_import_ms("flowstone", processes)
    anyio_ms = await process_import_ms("anyio", processes)
    verdict = "met" if flowstone_ms < IMPORT_TARGET_MS else "MISSED"
    report(
        "import flowstone (baseline: import anyio)",
        flowstone_ms,
        anyio_ms,
        "ms",
        f"whole process minus `python -c pass`, bytecode cached, best of {processes}; "
        f"names load on first use; target < {IMPORT_TARGET_MS:g} ms: {verdict}",
    )
    everything_ms = await process_cost_ms(EVERYTHING, processes)
    runtime_ms = await process_cost_ms("import asyncio, anyio", processes)
    report(
        "everything loaded (baseline: import asyncio, anyio)",
        everything_ms,
        runtime_ms,
        "ms",
        "every public name, the events and the execution layer, as by the first run",
    )


# -- profiling ---------------------------------------------------------------------------


async def _profile(workload: Workload, *, events: bool, sort: str, limit: int) -> None:
    pipeline = pipeline_of(workload)
    await run_flowstone(pipeline, workload, events=events)  # warm-up
    sink = CountingSink()
    async with fs.Runtime(event_sinks=[sink] if events else []) as runtime:
        profiler = cProfile.Profile()
        profiler.enable()
        result = await runtime.materialize(pipeline)
        profiler.disable()
    if not result.ok:
        raise RuntimeError(f"{workload.name}: the profiled run failed")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    total: float = getattr(stats, "total_tt", math.nan)
    n = len(workload.nodes)
    print(f"{workload.name}: {total * 1e3:.1f} ms profiled, {total / n * 1e6:.1f} µs/asset")
    stats.strip_dirs().sort_stats(sort).print_stats(limit)


def main(argv: Sequence[str] | None = None) -> int:
    """Profile one workload's flowstone run with cProfile and print the top functions.

    :return: the exit code
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_core",
        description="Profile flowstone's in-memory runtime on one core workload.",
    )
    parser.add_argument("--profile", choices=["chain", "wide", "single"], default="chain")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default: tottime)")
    parser.add_argument("--limit", type=int, default=30, help="rows to print (default: 30)")
    parser.add_argument("--no-events", action="store_true", help="run without an event sink")
    args = parser.parse_args(argv)
    workloads: dict[str, Callable[[], Workload]] = {"chain": chain, "wide": wide, "single": single}
    workload = workloads[args.profile]()

    async def go() -> None:
        await _profile(workload, events=not args.no_events, sort=args.sort, limit=args.limit)

    anyio.run(go)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
