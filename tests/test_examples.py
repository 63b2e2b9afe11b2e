"""The examples run: the pipeline and notebook scripts end to end, the FastAPI app in-process.

The FastAPI app is driven through ``httpx.ASGITransport`` with its lifespan entered, so the
requests exercise the real runtime; 100 concurrent requests for different days must each
see only their own partition, resources and results.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import ModuleType

    import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``examples/<name>`` with this interpreter and return its output; fail on errors."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        cwd=ROOT,
        encoding="utf-8",
        env=env,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, f"{name} exited {process.returncode}:\n{process.stderr}"
    return process.stdout


def test_observability_script_prints_the_trace_health_and_metrics() -> None:
    out = run_example("observability.py")
    assert "revenue: 150" in out
    assert (
        "GET /daily-report\n"
        "  flowstone.run\n"
        "    flowstone.materialize orders  [flowstone.retry]\n"
        "    flowstone.materialize totals\n"
        "    flowstone.materialize report\n"
    ) in out
    assert "health: store up" in out
    assert "event: AssetRetried orders" in out
    assert "flowstone_runs_total{" in out


@pytest.mark.postgres
def test_gates_script_waits_exits_and_finishes_in_a_second_process(
    pg_dsn: str, pg_schema: str
) -> None:
    common = ["--dsn", pg_dsn, "--schema", pg_schema, "--run-id", "week-1"]
    env = {"FLOWSTONE_GATE_SECRET": "a secret for the example's tokens"}
    started = run_example("gates_approval.py", "start", *common, env=env)
    assert "built the report" in started
    assert "to editors: Publish the weekly report? approve gate g-" in started
    assert "run week-1: waiting" in started
    pending = run_example("gates_approval.py", "pending", *common, env=env)
    assert "week-1: Publish the weekly report?" in pending
    finished = run_example("gates_approval.py", "approve", *common, "--by", "ana", env=env)
    assert "built the report" not in finished  # reused: nothing upstream ran again
    assert "run week-1: succeeded" in finished
    assert "published 2025-W01 (approved by ana)" in finished


@pytest.mark.postgres
def test_durable_script_carries_on_after_dying_halfway(pg_dsn: str, pg_schema: str) -> None:
    common = ["--dsn", pg_dsn, "--schema", pg_schema, "--run-id", "halfway"]
    died = subprocess.run(
        [sys.executable, str(EXAMPLES / "durable.py"), *common, "--crash-after", "700"],
        capture_output=True,
        cwd=ROOT,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert died.returncode == 1, died.stderr  # it died in the middle of the fan-out
    out = run_example("durable.py", *common)
    assert "run halfway: succeeded (resumed: True)" in out
    assert "  orders            succeeded  reused" in out
    assert "scatter: 2000 of 2000 orders, 0 failed" in out
    assert "risky orders by country: {'DE': 140, 'FR': 140, 'NL': 140, 'SE': 140}" in out
    scored = int(out.split("orders scored by this process: ")[1].split(" ")[0])
    assert 2000 - 700 <= scored <= 2000 - 700 + 1 + 2 * 100  # unwritten ones run again


def test_schedules_script_runs_three_virtual_days_of_schedules_and_a_sensor() -> None:
    out = run_example("schedules.py")
    assert "nightly revenue built for: 2025-02-28, 2025-03-01, 2025-03-02" in out
    assert "dashboard refreshed 72 times" in out
    assert "files imported once each: orders-1.csv, orders-2.csv, orders-3.csv" in out
    assert "nightly-revenue: last 2025-03-03 01:30Z succeeded, next 2025-03-04 01:30Z" in out


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (without relying on the working directory)."""
    module_name = f"flowstone_examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# -- scripts -----------------------------------------------------------------------------


def test_pipeline_script_materializes_a_day_and_backfills_a_week() -> None:
    out = run_example("pipeline.py")
    assert "daily_summary <- sessions, top_pages" in out
    assert "page_views     succeeded  2 attempt(s)" in out  # the flaky API was retried
    assert "summary: {'day': '2025-03-04', " in out
    assert "backfill: 7 succeeded, 0 failed, 0 skipped" in out
    assert "again:    0 succeeded, 0 failed, 7 skipped" in out


def test_pipeline_script_takes_another_day() -> None:
    out = run_example("pipeline.py", "--day", "2025-03-20")
    assert "summary: {'day': '2025-03-20', " in out


def test_notebook_script_recomputes_only_what_a_redefinition_affects() -> None:
    out = run_example("notebook.py")
    blocks = out.split("[")
    first = next(b for b in blocks if b.startswith("first run]"))
    unchanged = next(b for b in blocks if b.startswith("unchanged]"))
    after = next(b for b in blocks if b.startswith("after redefinition]"))
    assert "ran:    average, cleaned, readings, report, sensor_count" in first
    assert "reused: average, cleaned, readings, sensor_count" in unchanged
    assert "ran:    report\n" in unchanged
    assert "[redefined cleaned] stale: average, cleaned, report" in out
    assert "ran:    average, cleaned, report\n" in after
    assert "reused: readings, sensor_count" in after
    assert "'13.4 °C over 8 readings'" in after


# -- the FastAPI app ---------------------------------------------------------------------


@pytest.fixture
def fastapi_app() -> ModuleType:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    return load_example("fastapi_app")


@asynccontextmanager
async def serve(module: ModuleType, warehouse: Any = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a fresh app of ``module`` with its lifespan (and runtime) open."""
    import httpx

    app = module.create_app(warehouse)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        yield client


async def expected_revenue(module: ModuleType, day: str) -> tuple[int, float]:
    orders = await module.Warehouse().orders(day)
    return len(orders), round(sum(o["total"] for o in orders), 2)


async def test_fastapi_report_uses_the_path_partition_and_request_resources(
    fastapi_app: ModuleType,
) -> None:
    async with serve(fastapi_app) as client:
        response = await client.get(
            "/reports/2025-01-02", headers={"X-User": "ada", "X-Request-ID": "req-1"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    count, revenue = await expected_revenue(fastapi_app, "2025-01-02")
    assert body["day"] == "2025-01-02"
    assert (body["orders"], body["revenue"]) == (count, revenue)
    assert (body["prepared_for"], body["request_id"]) == ("ada", "req-1")
    assert body["computed_in_run"] == body["run_id"]
    assert body["reused"] == []


async def test_fastapi_second_request_reuses_current_upstream(fastapi_app: ModuleType) -> None:
    async with serve(fastapi_app) as client:
        first = (await client.get("/reports/2025-02-01")).json()
        second = (await client.get("/reports/2025-02-01", headers={"X-User": "bob"})).json()
    assert first["reused"] == []
    assert second["reused"] == ["orders", "revenue"]
    assert second["revenue"] == first["revenue"]
    assert second["prepared_for"] == "bob"
    assert second["run_id"] != first["run_id"]


@pytest.mark.parametrize("day", ["2019-01-01", "not-a-day"])
async def test_fastapi_unknown_day_is_404(fastapi_app: ModuleType, day: str) -> None:
    async with serve(fastapi_app) as client:
        response = await client.get(f"/reports/{day}")
    assert response.status_code == 404
    assert day in response.json()["detail"]


async def test_fastapi_graph(fastapi_app: ModuleType) -> None:
    async with serve(fastapi_app) as client:
        response = await client.get("/graph")
    assert response.status_code == 200
    assert response.text.startswith("graph TD")


async def test_fastapi_module_level_app_is_usable(fastapi_app: ModuleType) -> None:
    import httpx

    app = fastapi_app.app
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        response = await client.get("/reports/2024-06-30")
    assert response.status_code == 200
    assert response.json()["day"] == "2024-06-30"


async def test_fastapi_100_concurrent_requests_are_isolated(fastapi_app: ModuleType) -> None:
    n = 100
    base = fastapi_app.Warehouse

    class BarrierWarehouse(base):  # type: ignore[misc, valid-type]  # a class loaded at run time
        """Holds every ``orders`` call until all ``n`` requests are inside a run at once."""

        def __init__(self) -> None:
            self.arrived = 0
            self.all_in = anyio.Event()

        async def orders(self, day: str) -> list[dict[str, Any]]:
            self.arrived += 1
            if self.arrived == n:
                self.all_in.set()
            await self.all_in.wait()
            rows: list[dict[str, Any]] = await super().orders(day)
            return rows

    days = [f"2025-{month:02d}-{day:02d}" for month in (4, 5, 6, 7) for day in range(1, 26)]
    assert len(set(days)) == n
    warehouse = BarrierWarehouse()
    responses: dict[int, httpx.Response] = {}

    async with serve(fastapi_app, warehouse) as client:

        async def ask(i: int) -> None:
            headers = {"X-User": f"user-{i}", "X-Request-ID": f"req-{i}"}
            responses[i] = await client.get(f"/reports/{days[i]}", headers=headers)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(ask, i)

    assert warehouse.arrived == n  # every request was in flight at the same time
    run_ids = set()
    for i in range(n):
        assert responses[i].status_code == 200, responses[i].text
        body = responses[i].json()
        count, revenue = await expected_revenue(fastapi_app, days[i])
        assert body["day"] == days[i]
        assert (body["prepared_for"], body["request_id"]) == (f"user-{i}", f"req-{i}")
        assert (body["orders"], body["revenue"]) == (count, revenue)
        assert body["computed_in_run"] == body["run_id"]
        assert body["reused"] == []
        run_ids.add(body["run_id"])
    assert len(run_ids) == n


@pytest.mark.s3
def test_s3_events_script_scatters_over_lines_and_stores_a_summary(moto_server: Any) -> None:
    pytest.importorskip("aioboto3")
    out = run_example("s3_events.py", "--endpoint-url", moto_server.endpoint_url)
    assert "scored 300 events" in out
    assert "/flowstone/summary/partition=2025-01-02" in out


def test_checks_script_blocks_a_bad_day_and_checks_again_after_the_fix() -> None:
    out = run_example("checks.py")
    assert (
        "2025-03-01: succeeded; checks: no_negative_totals passed (error), "
        "ids_unique_and_emails_present FAILED (warn)\n  revenue: 35\n"
    ) in out
    assert (
        "2025-03-02: failed; checks: no_negative_totals FAILED (error), "
        "ids_unique_and_emails_present passed (warn)\n"
        "  revenue skipped: input 'orders' failed check 'no_negative_totals'\n"
    ) in out
    assert "after the fix: revenue 35\n" in out
    assert "run_checks: no_negative_totals=True, ids_unique_and_emails_present=True\n" in out
    assert (
        "history: [('2025-03-02', True), ('2025-03-02', True), ('2025-03-02', False), "
        "('2025-03-01', True)]"
    ) in out


def test_resumable_scatter_runs_only_what_is_left() -> None:
    out = run_example("resumable_scatter.py")
    first = next(line for line in out.splitlines() if line.startswith("first run:"))
    failed, succeeded = (int(word) for word in first.split() if word.isdigit())
    assert failed == 3
    assert f"second run: ran {30 - succeeded} items; the {succeeded} that succeeded" in out
    assert "geocoded 30 addresses" in out
