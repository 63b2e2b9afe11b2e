"""A process running a pipeline with a scatter on a PostgresStore with ``PostgresEvents``.

``python events_child.py run --dsn … --schema … --run-id R``

Prints one JSON line: the run's status and how many notifications the process sent.
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio

import flowstone as fs
from flowstone.ext.postgres import PostgresEvents, PostgresStore
from flowstone.ext.scatter import scatter

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", required=True)
ARGS = parser.parse_args()


@fs.asset
def keys() -> list[str]:
    return [f"k{i}" for i in range(200)]


@fs.asset
@scatter(items=lambda deps: deps["keys"], key=lambda k: k, max_concurrent=8)
async def upper(item: str) -> str:
    return item.upper()


@fs.asset
def broken(upper: list[str]) -> int:
    raise ValueError(f"{len(upper)} is not enough")


async def main() -> None:
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema)
    events = PostgresEvents(store)
    async with fs.Runtime(store=store, plugins=[events]) as rt:
        result = await rt.materialize(
            [keys, upper, broken], run_id=ARGS.run_id, raise_on_error=False
        )
    sys.stdout.write(json.dumps({"status": result.status.value, "sent": events.sent}) + "\n")


anyio.run(main)
