"""Durable scatter benchmarks: items per second on PostgreSQL, beside raw asyncpg.

Workloads:

- **W5** — 20,000 durable scatter items with trivial work (``item * 2``), materialized
  through a runtime whose scatter coordinator is :class:`PostgresScatterCoordinator`: items
  per second over the whole ``materialize`` (barrier, enumeration, claims, results, gather,
  the stored value), beside a raw asyncpg baseline in the same run that inserts the same
  20,000 results with ``executemany`` in batches of 500. Target: at least 0.7x. Reported for
  the starting process alone and with one worker process beside it; the note gives the
  statements per 1,000 items;
- **W7** — items that each wait 5 ms, ``max_concurrent=50`` per process: the starting
  process only coordinates (``local_concurrency=0``) while one, then two worker processes
  run the items. Target: two workers reach at least 1.6x the items per second of one.

Worker processes run this module: ``python -m benchmarks.bench_postgres_scatter worker
--dsn … --schema …``. It needs a server: ``FLOWSTONE_TEST_PG_DSN`` (default: the local
test server). Each run uses its own schema and drops it at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import asyncpg

import flowstone as fs
from flowstone.ext.postgres import PostgresBarrierStore, PostgresStore
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator
from flowstone.ext.postgres._worker import ScatterWorker
from flowstone.ext.scatter import BarrierScatterCoordinator, scatter

from .bench_postgres import Statements

if TYPE_CHECKING:
    from . import Report

__all__ = ["W5_ITEMS", "W7_ITEMS", "run"]

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"
W5_ITEMS = 20_000
W7_ITEMS = 12_000
W5_CONCURRENCY = 500
W7_CONCURRENCY = 50
W7_WAIT = 0.005
_ROOT = Path(__file__).resolve().parents[1]


@fs.asset
def w5_count() -> int:
    return W5_ITEMS


@fs.asset
@scatter(items=lambda deps: range(deps["w5_count"]), max_concurrent=W5_CONCURRENCY)
async def w5_doubled(item: int) -> int:
    return item * 2


@fs.asset
def w7_count() -> int:
    return W7_ITEMS


@fs.asset
@scatter(items=lambda deps: range(deps["w7_count"]), max_concurrent=W7_CONCURRENCY)
async def w7_waited(item: int) -> int:
    await anyio.sleep(W7_WAIT)
    return item


W5 = fs.Pipeline([w5_count, w5_doubled], name="bench_w5")
W7 = fs.Pipeline([w7_count, w7_waited], name="bench_w7")


async def baseline_rows_per_s(admin: asyncpg.Connection[Any], schema: str) -> float:
    """Rows per second inserting W5's results with ``executemany`` in batches of 500."""
    table = f'"{schema}".raw_results'
    await admin.execute(f"CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, v jsonb)")
    await admin.execute(f"TRUNCATE {table}")
    rows = [(i, json.dumps(i * 2)) for i in range(W5_ITEMS)]
    sql = f"INSERT INTO {table} (id, v) VALUES ($1, $2::jsonb)"
    started = perf_counter()
    for start in range(0, W5_ITEMS, 500):
        await admin.executemany(sql, rows[start : start + 500])
    return W5_ITEMS / (perf_counter() - started)


def spawn_worker(
    dsn: str, schema: str, pipeline: str, max_concurrent: int
) -> subprocess.Popen[bytes]:
    """A worker process serving ``pipeline`` (``w5`` or ``w7``) of this module."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_ROOT / "src"), str(_ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_postgres_scatter",
            "worker",
            "--dsn",
            dsn,
            "--schema",
            schema,
            "--pipeline",
            pipeline,
            "--max-concurrent",
            str(max_concurrent),
        ],
        cwd=_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )


async def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            await anyio.to_thread.run_sync(functools.partial(worker.wait, 20))
        except subprocess.TimeoutExpired:
            worker.kill()


async def wait_for_workers(admin: asyncpg.Connection[Any], schema: str, count: int) -> None:
    """Until ``count`` worker processes have registered."""
    with anyio.fail_after(60):
        while True:
            try:
                found = await admin.fetchval(f'SELECT count(*) FROM "{schema}".scatter_workers')
            except asyncpg.UndefinedTableError:
                found = 0
            if found >= count:
                return
            await anyio.sleep(0.05)


def runtime_for(store: PostgresStore, local: int | None = None) -> fs.Runtime:
    runtime = fs.Runtime(store=store)
    runtime.coordinators.register(
        "scatter", PostgresScatterCoordinator(store, local_concurrency=local)
    )
    return runtime


async def items_per_s(runtime: fs.Runtime, pipeline: fs.Pipeline, items: int) -> float:
    started = perf_counter()
    result = await runtime.materialize(pipeline)
    elapsed = perf_counter() - started
    assert result.ok
    return items / elapsed


async def w5(report: Report, dsn: str, admin: asyncpg.Connection[Any], repeat: int) -> None:
    schema = f"fs_bench_w5_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        counter = Statements()
        store = PostgresStore(dsn, schema=schema, connect_options={"init": counter.init})
        alone: list[float] = []
        paired: list[float] = []
        baseline: list[float] = []
        async with runtime_for(store) as runtime:
            await runtime.materialize(W5)  # warm up: caches, statistics
            for _ in range(repeat):
                baseline.append(await baseline_rows_per_s(admin, schema))
                counter.count = 0
                alone.append(await items_per_s(runtime, W5, W5_ITEMS))
            statements = counter.count / (W5_ITEMS / 1000)
            workers = [spawn_worker(dsn, schema, "w5", W5_CONCURRENCY)]
            try:
                await wait_for_workers(admin, schema, 1)
                paired.extend([await items_per_s(runtime, W5, W5_ITEMS) for _ in range(repeat)])
            finally:
                await stop_workers(workers)
        raw = max(baseline)
        best = max(alone)
        ratio = best / raw
        report(
            f"W5 durable scatter, {W5_ITEMS:,} trivial items (starter alone)",
            best,
            raw,
            "items/s",
            f"{ratio:.2f}x of executemany(500) rows/s ({'meets' if ratio >= 0.7 else 'misses'} "
            f"the 0.7x target); {statements:.1f} statements per 1,000 items by the starter",
        )
        both = max(paired)
        report(
            f"W5 durable scatter, {W5_ITEMS:,} trivial items (starter + 1 worker process)",
            both,
            raw,
            "items/s",
            f"{both / raw:.2f}x of the baseline",
        )
        barriers = PostgresBarrierStore(store)
        runtime = fs.Runtime(store=store)
        runtime.coordinators.register("scatter", BarrierScatterCoordinator(barriers))
        async with runtime:
            await runtime.materialize(W5)  # warm up
            counter.count = 0
            engine = [await items_per_s(runtime, W5, W5_ITEMS) for _ in range(repeat)]
            statements = counter.count / (W5_ITEMS / 1000) / repeat
        await barriers.aclose()
        best = max(engine)
        report(
            f"W5 on the barrier engine + PostgresBarrierStore, {W5_ITEMS:,} items",
            best,
            raw,
            "items/s",
            f"{best / raw:.2f}x of the baseline; {statements:.1f} statements per 1,000 items",
        )
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def w7(report: Report, dsn: str, admin: asyncpg.Connection[Any], repeat: int) -> None:
    results: dict[int, float] = {}
    for count in (1, 2):
        schema = f"fs_bench_w7_{uuid.uuid4().hex[:8]}"
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        store = PostgresStore(dsn, schema=schema)
        try:
            async with runtime_for(store, local=0) as runtime:
                await store.migrate()
                workers = [spawn_worker(dsn, schema, "w7", W7_CONCURRENCY) for _ in range(count)]
                try:
                    await wait_for_workers(admin, schema, count)
                    runs = [await items_per_s(runtime, W7, W7_ITEMS) for _ in range(repeat)]
                finally:
                    await stop_workers(workers)
            results[count] = max(runs)
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    ideal = W7_CONCURRENCY / W7_WAIT
    report(
        f"W7 5 ms items, max_concurrent={W7_CONCURRENCY}: one worker process",
        results[1],
        ideal,
        "items/s",
        f"baseline: {W7_CONCURRENCY} concurrent 5 ms waits with no overhead",
    )
    scale = results[2] / results[1]
    report(
        f"W7 5 ms items, max_concurrent={W7_CONCURRENCY}: two worker processes",
        results[2],
        results[1] * 2,
        "items/s",
        f"{scale:.2f}x of one worker ({'meets' if scale >= 1.6 else 'misses'} the 1.6x "
        "target); baseline: twice one worker",
    )


async def run(report: Report) -> None:
    """Run W5 and W7 and report them."""
    dsn = os.environ.get("FLOWSTONE_TEST_PG_DSN", DEFAULT_DSN)
    repeat = 1 if report.quick else 3
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"no PostgreSQL at FLOWSTONE_TEST_PG_DSN: {exc}") from exc
    try:
        await w5(report, dsn, admin, repeat)
        await w7(report, dsn, admin, repeat)
    finally:
        await admin.close()


# -- worker processes --------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    pipeline = W5 if args.pipeline == "w5" else W7
    worker = ScatterWorker(
        args.dsn, pipeline, schema=args.schema, max_concurrent=args.max_concurrent
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    worker.stop()
                    return

            tg.start_soon(stop_on_signal)
            await worker.run()
            tg.cancel_scope.cancel()


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_postgres_scatter")
    parser.add_argument("role", choices=["worker"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--pipeline", choices=["w5", "w7"], required=True)
    parser.add_argument("--max-concurrent", type=int, required=True)
    anyio.run(_serve, parser.parse_args())


if __name__ == "__main__":
    _main()
