"""The pipeline ``flowstone demo`` (and ``make demo``) runs: a small shop's daily revenue.

It needs nothing but the base install: an in-memory runtime, a flaky source that succeeds
on its second attempt, a synchronous transformation in a worker thread, a daily partition
and a scatter fan-out over the day's orders.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import anyio

import flowstone as fs
from flowstone.ext.scatter import scatter

__all__ = [
    "country_revenue",
    "net_orders",
    "orders",
    "pipeline",
    "report",
    "run_demo",
    "valid_orders",
]

days = fs.DailyPartitions(start="2025-01-01", end="2025-02-01")


class Shop:
    """A pretend order API: slow, and failing on the first call of each day."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = defaultdict(int)

    async def orders(self, day: str) -> list[dict[str, Any]]:
        self.calls[day] += 1
        await anyio.sleep(0.01)
        if self.calls[day] == 1:
            raise ConnectionError("shop API timed out")
        rng = random.Random(day)
        countries = ["DE", "FR", "NL", "SE"]
        return [
            {
                "id": f"{day}-{i}",
                "country": rng.choice(countries),
                "total": round(rng.uniform(5, 200), 2),
            }
            for i in range(40)
        ] + [{"id": f"{day}-bad", "country": "??", "total": -1.0}]


@fs.asset(partitions=days, retry=fs.Retry(attempts=3, backoff=0.05))
async def orders(ctx: fs.Context) -> list[dict[str, Any]]:
    """The day's orders, from the shop API (retried: the API is flaky)."""
    rows: list[dict[str, Any]] = await ctx.resources.shop.orders(day=ctx.partition)
    ctx.add_metadata(rows=len(rows))
    return rows


@fs.asset(partitions=days)
def valid_orders(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Orders with a known country and a positive total (plain function: runs in a thread)."""
    return [o for o in orders if o["total"] > 0 and o["country"] != "??"]


VAT = {"DE": 0.19, "FR": 0.20, "NL": 0.21, "SE": 0.25}


@fs.asset(partitions=days)
@scatter(items=lambda deps: deps["valid_orders"], key=lambda o: o["id"], max_concurrent=8)
async def net_orders(item: dict[str, Any]) -> dict[str, Any]:
    """Each order without VAT: a fan-out, one call per order, eight at a time."""
    await anyio.sleep(0.001)  # stands for a call to a tax service
    return {**item, "net": round(item["total"] / (1 + VAT[item["country"]]), 2)}


@fs.asset(partitions=days)
async def country_revenue(net_orders: list[dict[str, Any]]) -> dict[str, float]:
    """Net revenue per country."""
    revenue: dict[str, float] = defaultdict(float)
    for order in net_orders:
        revenue[order["country"]] += order["net"]
    return {k: round(v, 2) for k, v in sorted(revenue.items())}


@fs.asset(partitions=days)
async def report(ctx: fs.Context, country_revenue: dict[str, float]) -> str:
    """A one-line report of the day."""
    best = max(country_revenue, key=lambda k: country_revenue[k])
    return f"{ctx.partition}: {sum(country_revenue.values()):.2f} EUR, best market {best}"


pipeline = fs.Pipeline([orders, valid_orders, net_orders, country_revenue, report], name="shop")


async def run_demo(partition: str = "2025-01-02") -> fs.MaterializeResult:
    """Materialize the demo's report for one day, twice (the second run reuses everything)."""
    shop = Shop()
    async with fs.Runtime(resources={"shop": shop}) as runtime:
        first = await runtime.materialize(pipeline, "report", partition=partition)
        second = await runtime.materialize(pipeline, "country_revenue", partition=partition)
    print(pipeline.graph("text"))
    print()
    for name, record in first.records.items():
        attempts = f"{record.attempts} attempt{'s' if record.attempts != 1 else ''}"
        print(f"  {name:<16} {record.status.value:<10} {attempts:<11} {record.duration or 0:.3f}s")
    print()
    print(first["report"])
    print(f"net revenue by country: {first['country_revenue']}")
    fanout = first.records["net_orders"].metadata["scatter"]
    print(f"fan-out: {fanout['succeeded']} of {fanout['total']} orders, {fanout['failed']} failed")
    reused = [n for n, r in second.records.items() if r.reused]
    print(f"second run {second.status.value}; reused current values of: {', '.join(reused)}")
    return first
