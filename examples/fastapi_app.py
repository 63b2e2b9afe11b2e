"""A FastAPI app that materializes assets inside its request handlers.

Run it with ``uvicorn examples.fastapi_app:app`` (``pip install uvicorn``) from the project
root, then ask for ``GET /reports/2025-01-02`` (headers ``X-User`` and ``X-Request-ID`` are
optional) or ``GET /graph``.

- The app opens one :class:`flowstone.Runtime` for its lifetime (in the lifespan), holding
  the app-wide resources (here a warehouse client). Stored values live in it, so a second
  request for the same day reuses that day's ``orders`` and ``revenue``.
- Each request materializes ``report`` for the day in its path (the partition) and passes
  its own resources (the caller). Concurrent requests never see each other's partition,
  resources or results.
- Stored upstream values are shared across requests by (asset, partition): per-request
  resources suit things that do not change an upstream value (who asks, a trace id, a
  session). Whatever changes a value belongs in the partition key.
"""

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.lowlevel
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

import flowstone as fs

__all__ = [
    "Caller",
    "DailyReport",
    "Warehouse",
    "app",
    "create_app",
    "days",
    "orders",
    "pipeline",
    "report",
    "revenue",
]

days = fs.DailyPartitions(start="2024-01-01", end="2026-01-01")


class Warehouse:
    """A pretend warehouse client: a day's orders, the same every time for the same day."""

    async def orders(self, day: str) -> list[dict[str, Any]]:
        """The orders placed on ``day``."""
        await anyio.lowlevel.checkpoint()  # a real client would await the database here
        rng = random.Random(day)
        return [
            {"id": f"{day}-{i}", "total": round(rng.uniform(5, 250), 2)}
            for i in range(rng.randint(20, 60))
        ]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asked: a per-request resource."""

    user: str
    request_id: str


@fs.asset(partitions=days)
async def orders(ctx: fs.Context) -> list[dict[str, Any]]:
    """The day's orders, from the warehouse (an app-wide resource)."""
    rows: list[dict[str, Any]] = await ctx.resources.warehouse.orders(ctx.partition)
    return rows


@fs.asset(partitions=days)
def revenue(orders: list[dict[str, Any]]) -> float:
    """The day's revenue (a plain function: it runs in a worker thread)."""
    return round(sum(float(order["total"]) for order in orders), 2)


@fs.asset(partitions=days)
async def report(ctx: fs.Context, orders: list[dict[str, Any]], revenue: float) -> dict[str, Any]:
    """The day's report, prepared for the caller of this request."""
    caller: Caller = ctx.resources.caller
    return {
        "day": ctx.partition,
        "orders": len(orders),
        "revenue": revenue,
        "prepared_for": caller.user,
        "request_id": caller.request_id,
        "computed_in_run": ctx.run_id,
    }


pipeline = fs.Pipeline([orders, revenue, report], name="daily_report")


class DailyReport(BaseModel):
    """The response of ``GET /reports/{day}``."""

    day: str
    orders: int
    revenue: float
    prepared_for: str
    request_id: str
    computed_in_run: str
    run_id: str
    reused: list[str]


async def get_runtime(request: Request) -> fs.Runtime:
    """The app's runtime, opened by the lifespan."""
    runtime: fs.Runtime = request.app.state.runtime
    return runtime


router = APIRouter()


@router.get("/reports/{day}")
async def daily_report(
    day: str,
    runtime: Annotated[fs.Runtime, Depends(get_runtime)],
    x_user: Annotated[str, Header()] = "anonymous",
    x_request_id: Annotated[str | None, Header()] = None,
) -> DailyReport:
    """Materialize the day's report (its inputs are reused while they are current)."""
    caller = Caller(user=x_user, request_id=x_request_id or uuid.uuid4().hex)
    try:
        result = await fs.materialize(
            pipeline, "report", partition=day, resources={"caller": caller}, runtime=runtime
        )
    except fs.PartitionError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except fs.AssetExecutionError as exc:
        raise HTTPException(status_code=502, detail=f"the report failed: {exc}") from None
    reused = sorted(name for name, record in result.records.items() if record.reused)
    return DailyReport(**result["report"], run_id=result.run_id, reused=reused)


@router.get("/graph", response_class=PlainTextResponse)
async def graph() -> str:
    """The pipeline as a Mermaid graph."""
    return pipeline.graph("mermaid")


def create_app(warehouse: Warehouse | None = None) -> FastAPI:
    """A new app whose runtime holds ``warehouse`` (default: a fresh :class:`Warehouse`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources = {"warehouse": warehouse if warehouse is not None else Warehouse()}
        async with fs.Runtime(resources=resources) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title="flowstone daily reports", lifespan=lifespan)
    app.include_router(router)
    return app


app = create_app()
