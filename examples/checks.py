"""Asset checks: data-quality checks that run after their asset and can stop bad data.

Run it with ``python examples/checks.py``. It shows:

- an ``error`` check (a failure blocks the asset's dependents, and the run fails) and a
  ``warn`` check (a failure is only recorded), one of them built on ``flowstone.checks``;
- the checks running per partition, their results in the run's result and in the history;
- ``runtime.run_checks`` on a stored value after the data was fixed at its source.
"""

from __future__ import annotations

from typing import Any

import anyio

import flowstone as fs
from flowstone.checks import no_nulls, unique

__all__ = ["days", "main", "no_negative_totals", "orders", "pipeline", "revenue"]

days = fs.DailyPartitions(start="2025-03-01")

#: The pretend source: the second day holds a refund booked as a negative order.
SOURCE: dict[str, list[dict[str, Any]]] = {
    "2025-03-01": [{"id": 1, "total": 20, "email": "a@x"}, {"id": 2, "total": 15, "email": None}],
    "2025-03-02": [{"id": 3, "total": 30, "email": "c@x"}, {"id": 4, "total": -5, "email": "d@x"}],
}


@fs.asset(partitions=days)
def orders(ctx: fs.Context) -> list[dict[str, Any]]:
    """The day's orders, read from the source."""
    return [dict(row) for row in SOURCE[str(ctx.partition)]]


@fs.asset(partitions=days)
def revenue(orders: list[dict[str, Any]]) -> int:
    """The day's revenue."""
    return sum(o["total"] for o in orders)


@fs.check(asset="orders", severity="error")
async def no_negative_totals(orders: list[dict[str, Any]]) -> fs.CheckResult:
    """No order has a negative total (a refund is not an order)."""
    bad = [o["id"] for o in orders if o["total"] < 0]
    return fs.CheckResult(passed=not bad, metadata={"bad_ids": bad})


@fs.check(asset="orders")
def ids_unique_and_emails_present(orders: list[dict[str, Any]]) -> bool:
    """Order ids are unique, and every order has an email (only a warning)."""
    return unique(orders, "id").passed and no_nulls(orders, "email").passed


pipeline = fs.Pipeline(
    [orders, revenue, no_negative_totals, ids_unique_and_emails_present], name="checks"
)


async def main() -> None:
    """Materialize two days, look at the checks, fix the source and check again."""
    async with fs.Runtime() as runtime:
        for day in days.range("2025-03-01", "2025-03-02"):
            result = await runtime.materialize(pipeline, partition=day, raise_on_error=False)
            shown = ", ".join(
                f"{c.check} {'passed' if c.passed else 'FAILED'} ({c.severity})"
                for c in result.checks["orders"]
            )
            print(f"{day}: {result.status.value}; checks: {shown}")
            if "revenue" in result:
                print(f"  revenue: {result['revenue']}")
            else:
                print(f"  revenue skipped: {result.outcomes['revenue'].reason}")
        SOURCE["2025-03-02"][1]["total"] = 5  # fixed at the source
        fixed = await runtime.materialize(pipeline, partition="2025-03-02")
        print(f"after the fix: revenue {fixed['revenue']}")
        again = await runtime.run_checks("orders", "2025-03-02")
        print("run_checks:", ", ".join(f"{r.check}={r.passed}" for r in again))
        history = await runtime.check_history("orders", check=no_negative_totals)
        print("history:", [(r.partition, r.passed) for r in history])


if __name__ == "__main__":
    anyio.run(main)
