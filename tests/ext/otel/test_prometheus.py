"""The Prometheus recipe (``examples/observability.py``): a scrape of ``/metrics`` shows
flowstone's metrics, named as Prometheus names them, without run or partition labels."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio.to_thread

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "observability.py"


async def test_the_metrics_are_scraped_from_the_prometheus_endpoint() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = ""
        while not line.startswith("serving "):
            line = await anyio.to_thread.run_sync(process.stdout.readline)
            assert line, process.stderr.read() if process.stderr else "no output"
        url = line.split()[1]

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        scraped = await anyio.to_thread.run_sync(scrape)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        code = await anyio.to_thread.run_sync(lambda: process.wait(30))
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    assert code == 0
    series = {
        line.split("{")[0]: line for line in scraped.splitlines() if line.startswith("flowstone_")
    }
    assert 'outcome="succeeded"' in series["flowstone_runs_total"]
    assert series["flowstone_runs_total"].endswith(" 1.0")
    assert "flowstone_materializations_total" in series
    assert "flowstone_materialization_duration_seconds_bucket" in series
    assert "flowstone_materialization_duration_seconds_count" in series
    assert "flowstone_gates_open" in series
    materialized = [
        line for line in scraped.splitlines() if line.startswith("flowstone_materializations_total")
    ]
    assert len(materialized) == 3  # orders, totals, report: one series each
    assert all('outcome="succeeded"' in line and line.endswith(" 1.0") for line in materialized)
    assert "run_id" not in scraped and "partition" not in scraped
