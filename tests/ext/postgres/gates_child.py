"""A process running a pipeline with a signal gate on a PostgresStore, for the durable
gate tests.

``python gates_child.py ROLE --dsn … --schema … [--run-id R] [--token-file F] [--amount N]``

- ``run``: materialize the pipeline ``shop`` (``order`` → ``payment``, a signal gate →
  ``receipt``; ``stock`` beside it) and exit; the notifier writes the token to the file.
- ``hold``: the same with ``payment_held`` (``hold=None``): the process waits for the
  signal in process.
- ``signal``: send the signal with the token from the file, and exit.
- ``resume``: resume the run (its pipeline found by name) and exit.
- ``signal-resume``: both, in that order.

Every asset records that it ran in the side table ``ran``. The process prints one JSON
line: the run's status, waiting assets, and the receipt.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import asyncpg

import flowstone as fs
from flowstone.ext import gates
from flowstone.ext.postgres import PostgresStore

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run", "hold", "signal", "resume", "signal-resume"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--run-id", default="order-42")
parser.add_argument("--token-file", default="token.txt")
parser.add_argument("--amount", type=int, default=10)
ARGS = parser.parse_args()
SIDE = f'"{ARGS.schema}"'


async def ran(name: str) -> None:
    conn = await asyncpg.connect(ARGS.dsn)
    try:
        await conn.execute(f"INSERT INTO {SIDE}.ran (name) VALUES ($1)", name)
    finally:
        await conn.close()


async def hand_out(gate: gates.OpenGate) -> None:
    partial = Path(ARGS.token_file + ".partial")
    partial.write_text(gate.token)
    partial.rename(ARGS.token_file)  # whole, or not there


@fs.asset
async def order() -> dict[str, Any]:
    await ran("order")
    return {"id": 42}


@fs.asset
async def stock(order: dict[str, Any]) -> int:
    await ran("stock")
    return 3


@fs.asset
@gates.signal(timeout=3600, notify=hand_out)
async def payment(order: dict[str, Any], signal: gates.Signal) -> dict[str, Any]:
    await ran("payment")
    return {"order": order["id"], "paid": signal.payload["amount"]}


@fs.asset
async def receipt(payment: dict[str, Any]) -> str:
    await ran("receipt")
    return f"paid {payment['paid']} for order {payment['order']}"


@fs.asset(name="payment")
@gates.signal(timeout=3600, hold=None, notify=hand_out)
async def payment_held(order: dict[str, Any], signal: gates.Signal) -> dict[str, Any]:
    await ran("payment")
    return {"order": order["id"], "paid": signal.payload["amount"]}


SHOP = fs.Pipeline([order, stock, payment, receipt], name="shop")
HELD = fs.Pipeline([order, stock, payment_held, receipt], name="shop-held")


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
            token = Path(ARGS.token_file).read_text()
            await gates.send_signal(token, {"amount": ARGS.amount}, runtime=rt)
        if ARGS.role in ("resume", "signal-resume"):
            result = await rt.resume(ARGS.run_id)
    report(result)


anyio.run(main)
