"""The pipelines of the durable gate tests, for their child processes and ``flowstone
worker``: ``order`` → ``payment`` (a signal gate) → ``receipt``, with ``stock`` beside.

Set by the environment: ``GATES_TEST_DSN`` and ``GATES_TEST_SCHEMA`` (every asset records
that it ran in the schema's side table ``ran``), and ``GATES_TEST_TOKENS``, the folder the
notifier writes each gate's token to (one file per run id).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg

import flowstone as fs
from flowstone.ext import gates


async def ran(name: str) -> None:
    conn = await asyncpg.connect(os.environ["GATES_TEST_DSN"])
    try:
        schema = os.environ["GATES_TEST_SCHEMA"]
        await conn.execute(f'INSERT INTO "{schema}".ran (name) VALUES ($1)', name)
    finally:
        await conn.close()


async def hand_out(gate: gates.OpenGate) -> None:
    folder = Path(os.environ["GATES_TEST_TOKENS"])
    partial = folder / f"{gate.run_id}.partial"
    partial.write_text(gate.token)
    partial.rename(folder / gate.run_id)  # whole, or not there


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
