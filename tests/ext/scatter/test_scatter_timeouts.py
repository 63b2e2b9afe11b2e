"""Per-item timeouts reach plain (sync) item functions."""

from __future__ import annotations

import threading

import anyio
import pytest

import flowstone as fs
from blocking import SAFETY
from flowstone.ext.scatter import (
    ItemTimeoutError,
    ScatterFailureThresholdExceeded,
    scatter,
    scatter_map,
)


async def test_a_sync_item_fails_at_its_timeout_in_a_pipeline(
    flowstone_runtime: fs.Runtime, release: threading.Event
) -> None:
    @fs.asset
    @scatter(items=lambda deps: [1, 2, 3], timeout=0.2, tolerated_failure=1)
    def handled(item: int) -> int:
        if item == 2:
            release.wait()
        return item * 10

    started = anyio.current_time()
    result = await flowstone_runtime.materialize([handled])
    assert anyio.current_time() - started < SAFETY / 2
    assert result["handled"] == [10, 30]
    summary = result.records["handled"].metadata["scatter"]
    assert summary["failed"] == 1
    assert "ItemTimeoutError" in str(summary["failures"])


async def test_a_sync_item_past_the_tolerance_fails_the_asset(
    flowstone_runtime: fs.Runtime, release: threading.Event
) -> None:
    @fs.asset
    @scatter(items=lambda deps: ["a"], timeout=0.2)
    def stuck(item: str) -> str:
        release.wait()
        return item

    with pytest.raises(ScatterFailureThresholdExceeded, match="timed out after 0.2 s"):
        await flowstone_runtime.materialize([stuck])


async def test_scatter_map_times_out_a_sync_function(release: threading.Event) -> None:
    def stuck(item: int) -> int:
        release.wait()
        return item

    started = anyio.current_time()
    with pytest.raises(ScatterFailureThresholdExceeded) as info:
        await scatter_map(stuck, [1], timeout=0.2)
    assert anyio.current_time() - started < SAFETY / 2
    assert isinstance(info.value, fs.AssetExecutionError)
    assert ItemTimeoutError.__name__ in info.value.first_errors[0][1]
