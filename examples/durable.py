"""A durable pipeline on PostgreSQL: kill it halfway, run it again, and it carries on.

Run it against a PostgreSQL server (by default the test server that ``make test`` starts)::

    python examples/durable.py --run-id nightly-1
    python examples/durable.py --run-id nightly-2 --crash-after 300   # dies like kill -9
    python examples/durable.py --run-id nightly-2                     # carries on

The second command stops the process dead in the middle of the fan-out. The third one
resumes that run: the assets that finished are not run again, nor are the scored orders
whose results were stored; it prints how many orders this process scored.

More processes can share the fan-out of a run while it goes::

    PYTHONPATH=examples flowstone worker --dsn "$DSN" --schema flowstone_example \\
        --pipeline durable:pipeline
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.scatter import scatter

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"
ORDERS = 2_000

#: Orders scored by this process, and after how many it dies (``--crash-after``).
scored_here = 0
crash_after: int | None = None


@fs.asset
def orders() -> list[dict[str, Any]]:
    """Today's orders (a query against the shop's database, in real life)."""
    return [
        {"id": i, "amount": (i * 37) % 200 + 1, "country": "DE FR NL SE".split()[i % 4]}
        for i in range(ORDERS)
    ]


@fs.asset
@scatter(items=lambda deps: deps["orders"], max_concurrent=100, tolerated_failure=0.01)
async def scored(item: dict[str, Any]) -> dict[str, Any]:
    """Score each order (a call to a fraud-scoring service, in real life)."""
    global scored_here
    await anyio.sleep(0.001)
    scored_here += 1
    if crash_after is not None and scored_here >= crash_after:
        os._exit(1)  # no cleanup, no flush: as if the machine went away
    return {"id": item["id"], "country": item["country"], "risk": item["amount"] % 7}


@fs.asset
def risky_by_country(scored: list[dict[str, Any]]) -> dict[str, int]:
    """How many orders of each country look risky."""
    counts: dict[str, int] = {}
    for row in scored:
        if row["risk"] >= 5:
            counts[row["country"]] = counts.get(row["country"], 0) + 1
    return dict(sorted(counts.items()))


pipeline = fs.Pipeline([orders, scored, risky_by_country], name="durable_example")


async def main(dsn: str, schema: str, run_id: str) -> None:
    async with fs.Runtime(store=PostgresStore(dsn, schema=schema)) as runtime:
        result = await runtime.materialize(pipeline, run_id=run_id)
        print(f"run {result.run_id}: {result.status.value} (resumed: {result.resumed})")
        for name, record in result.records.items():
            how = "reused" if record.reused else f"{record.attempts} attempt"
            print(f"  {name:<17} {record.status.value:<10} {how}")
        print(f"risky orders by country: {result['risky_by_country']}")
        print(f"orders scored by this process: {scored_here} of {ORDERS}")
        summary = result.records["scored"].metadata["scatter"]
        print(
            f"scatter: {summary['succeeded']} of {summary['total']} orders, "
            f"{summary['failed']} failed"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dsn", default=os.environ.get("FLOWSTONE_TEST_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--schema", default="flowstone_example")
    parser.add_argument("--run-id", default="example")
    parser.add_argument(
        "--crash-after",
        type=int,
        default=None,
        help="die (like kill -9) after scoring this many orders",
    )
    args = parser.parse_args()
    crash_after = args.crash_after
    anyio.run(main, args.dsn, args.schema, args.run_id)
