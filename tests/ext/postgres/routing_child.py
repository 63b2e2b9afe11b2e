"""A process running a routed pipeline on a PostgresStore, for the durable-decision tests.

``python routing_child.py run --dsn … --schema … [--run-id R] [--die]``

The router ``pick`` decides differently on each call: its first call in the schema
chooses ``left``, every later call ``right`` (calls are counted in the side table
``router_calls``). The routed assets record that they ran in the side table ``ran``; with
``--die`` the chosen routed asset SIGKILLs its own process as it starts instead. The process
prints one JSON line: the run's status and each routed asset's status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import anyio
import asyncpg

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.routing import routed_from, router

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", default="routed")
parser.add_argument("--die", action="store_true")
ARGS = parser.parse_args()
SIDE = f'"{ARGS.schema}"'


async def side(sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(ARGS.dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@fs.asset
@router()
async def pick() -> str:
    calls = await side(f"INSERT INTO {SIDE}.router_calls DEFAULT VALUES RETURNING n")
    return "left" if calls == 1 else "right"


async def ran(name: str) -> str:
    if ARGS.die:  # at once, while the router's record may still be on its way
        os.kill(os.getpid(), signal.SIGKILL)
    await side(f"INSERT INTO {SIDE}.ran (name) VALUES ($1)", name)
    return name


@fs.asset
@routed_from("pick")
async def left() -> str:
    return await ran("left")


@fs.asset
@routed_from("pick")
async def right() -> str:
    return await ran("right")


async def main() -> None:
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema)
    async with fs.Runtime(store=store) as rt:
        result = await rt.materialize(fs.Pipeline([pick, left, right]), run_id=ARGS.run_id)
    sys.stdout.write(
        json.dumps(
            {
                "status": result.status.value,
                "left": result.records["left"].status.value,
                "right": result.records["right"].status.value,
            }
        )
        + "\n"
    )


anyio.run(main)
