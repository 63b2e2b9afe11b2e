"""A process taking part in a durable scatter, for the crash and multi-worker tests.

``python scatter_child.py starter|worker --dsn … --schema … [options]``

The pipeline: ``count`` (how many items) and ``work``, a durable scatter over
``range(count)`` whose items sleep a little, record their execution in the side table
``executions(key, pid)`` of the same database, and return ``{"i": i, "sq": i * i}``.

* ``starter`` materializes the pipeline with ``--run-id`` (again: a resume) and prints one
  JSON line: ``{"ok": <the gathered value is right>, "len": …}``;
* ``worker`` serves the barrier as a scatter worker until idle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import asyncpg

import flowstone as fs
from flowstone.ext.postgres import PostgresStore, RetryPolicy
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator
from flowstone.ext.postgres._worker import ScatterWorker
from flowstone.ext.scatter import scatter

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["starter", "worker"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", default="crash")
parser.add_argument("--items", type=int, default=3000)
parser.add_argument("--max-concurrent", type=int, default=20)
parser.add_argument("--local-concurrency", type=int, default=None)
parser.add_argument("--sleep", type=float, default=0.01)
parser.add_argument("--lease", type=float, default=30.0)
parser.add_argument("--idle-timeout", type=float, default=3.0)
ARGS = parser.parse_args()

ITEMS: int = ARGS.items
SLEEP: float = ARGS.sleep
SIDE = f'INSERT INTO "{ARGS.schema}".executions (key, pid) VALUES ($1, $2)'


@fs.asset
def count() -> int:
    return ITEMS


@fs.asset
@scatter(
    items=lambda deps: range(deps["count"]),
    max_concurrent=ARGS.max_concurrent,
    retry=fs.Retry(attempts=100, backoff=0.05, max_delay=0.5),
)
async def work(ctx: fs.Context, item: int) -> dict[str, int]:
    await anyio.sleep(SLEEP)
    await ctx.resources.side.execute(SIDE, ctx.scatter_key, os.getpid())
    return {"i": item, "sq": item * item}


PIPELINE = fs.Pipeline([count, work], name="crash")


async def main() -> None:
    side = await asyncpg.create_pool(ARGS.dsn, min_size=1, max_size=ARGS.max_concurrent)
    retry = RetryPolicy(timeout=60, initial_delay=0.05, max_delay=0.5)
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema, max_size=6, retry=retry)
    try:
        if ARGS.role == "starter":
            coordinator = PostgresScatterCoordinator(
                store, lease=ARGS.lease, local_concurrency=ARGS.local_concurrency
            )
            runtime = fs.Runtime(store=store, resources={"side": side})
            runtime.coordinators.register("scatter", coordinator)
            async with runtime:
                result = await runtime.materialize(PIPELINE, run_id=ARGS.run_id)
            value: Any = result["work"]
            expected = [{"i": i, "sq": i * i} for i in range(ITEMS)]
            sys.stdout.write(json.dumps({"ok": value == expected, "len": len(value)}) + "\n")
        else:
            async with fs.Runtime(store=store, resources={"side": side}) as runtime:
                worker = ScatterWorker(
                    runtime,
                    PIPELINE,
                    lease=ARGS.lease,
                    stop_when_idle=True,
                    idle_timeout=ARGS.idle_timeout,
                    poll_interval=0.1,
                )
                stats = await worker.run()
            sys.stdout.write(json.dumps({"items": stats.items, "barriers": stats.barriers}) + "\n")
    finally:
        await side.close()


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
