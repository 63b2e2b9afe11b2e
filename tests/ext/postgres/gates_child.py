"""A process running the gate tests' pipeline (``gates_pipeline``) on a PostgresStore.

``python gates_child.py ROLE --dsn … --schema … [--run-id R] [--amount N]``

- ``run``: materialize ``shop`` and exit (the notifier writes the token);
- ``hold``: materialize ``shop-held`` (``hold=None``): wait for the signal in process;
- ``signal``: send the signal with the run's token, and exit;
- ``resume``: resume the run (its pipeline found by name), and exit;
- ``signal-resume``: both, in that order.

The environment gives the secret and the token folder (see ``gates_pipeline``). The
process prints one JSON line: the run's status, waiting assets, and the receipt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from gates_pipeline import HELD, SHOP

import flowstone as fs
from flowstone.ext import gates
from flowstone.ext.postgres import PostgresStore

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run", "hold", "signal", "resume", "signal-resume"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", default="order-42")
parser.add_argument("--amount", type=int, default=10)
ARGS = parser.parse_args()


def report(result: fs.MaterializeResult | None) -> None:
    out: dict[str, Any] = {}
    if result is not None:
        out = {
            "status": result.status.value,
            "waiting": sorted(result.waiting),
            "receipt": result.get("receipt"),
        }
    sys.stdout.write(json.dumps(out) + "\n")


async def main() -> None:
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema)
    async with fs.Runtime(store=store, pipelines=[SHOP, HELD]) as rt:
        result = None
        if ARGS.role == "run":
            result = await rt.materialize(SHOP, run_id=ARGS.run_id)
        elif ARGS.role == "hold":
            result = await rt.materialize(HELD, run_id=ARGS.run_id)
        if ARGS.role in ("signal", "signal-resume"):
            token = (Path(os.environ["GATES_TEST_TOKENS"]) / ARGS.run_id).read_text()
            await gates.send_signal(token, {"amount": ARGS.amount}, runtime=rt)
        if ARGS.role in ("resume", "signal-resume"):
            result = await rt.resume(ARGS.run_id)
    report(result)


anyio.run(main)
