"""A process taking part in a scatter kept in ``PostgresBarrierStore``, for the
multi-process tests of the barrier engine.

``python barrier_child.py starter|worker --dsn … --schema … [options]``

``work`` scatters over ``range(--items)`` under ``BarrierScatterCoordinator``; each item
sleeps a little, records its execution in the side table ``executions(key, pid)`` and
returns ``{"i": i, "sq": i * i}``.

* ``starter`` materializes it with ``--run-id`` (again: a resume) and prints one JSON line,
  ``{"ok": <the gathered value is right>, "len": …}``;
* ``worker`` joins the running scatter until nothing is left to claim and prints
  ``{"items": <items it ran>}``.
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
from flowstone.ext.postgres import PostgresBarrierStore, PostgresStore
from flowstone.ext.scatter import BarrierScatterCoordinator, scatter

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["starter", "worker"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", default="barrier")
parser.add_argument("--items", type=int, default=2000)
parser.add_argument("--max-concurrent", type=int, default=10)
parser.add_argument("--sleep", type=float, default=0.01)
ARGS = parser.parse_args()

SIDE = f'INSERT INTO "{ARGS.schema}".executions (key, pid) VALUES ($1, $2)'


async def main() -> None:
    side = await asyncpg.create_pool(ARGS.dsn, min_size=1, max_size=ARGS.max_concurrent)

    async def run_item(item: int) -> dict[str, int]:
        await anyio.sleep(ARGS.sleep)
        await side.execute(SIDE, str(item), os.getpid())
        return {"i": item, "sq": item * item}

    @fs.asset
    @scatter(items=lambda deps: range(ARGS.items), max_concurrent=ARGS.max_concurrent)
    async def work(item: int) -> dict[str, int]:
        return await run_item(item)

    store = PostgresStore(ARGS.dsn, schema=ARGS.schema, max_size=6)
    await store.migrate()
    barriers = PostgresBarrierStore(store)
    coordinator = BarrierScatterCoordinator(barriers, lease=5, poll_interval=0.1)
    try:
        async with fs.Runtime(store=store, coordinators={"scatter": coordinator}) as runtime:
            if ARGS.role == "starter":
                result = await runtime.materialize([work], run_id=ARGS.run_id)
                value: Any = result["work"]
                expected = [{"i": i, "sq": i * i} for i in range(ARGS.items)]
                line = {"ok": value == expected, "len": len(value)}
            else:
                summary = await coordinator.work(
                    ARGS.run_id, "work", None, run_item, max_concurrent=ARGS.max_concurrent
                )
                line = {"items": summary.succeeded}
        sys.stdout.write(json.dumps(line) + "\n")
    finally:
        await barriers.aclose()
        await side.close()


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
