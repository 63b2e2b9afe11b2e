"""Timeouts reach plain (sync) functions: the attempt fails at its deadline."""

from __future__ import annotations

import threading

import anyio
import pytest

import flowstone as fs
from blocking import SAFETY


async def test_a_sync_asset_fails_at_its_timeout(
    flowstone_runtime: fs.Runtime, release: threading.Event
) -> None:
    @fs.asset(timeout=0.2)
    def blocked() -> int:
        release.wait()
        return 1

    started = anyio.current_time()
    with pytest.raises(fs.AssetTimeoutError, match="timed out after 0.2 s") as info:
        await flowstone_runtime.materialize([blocked])
    assert anyio.current_time() - started < SAFETY / 2
    assert info.value.asset == "blocked"
    assert info.value.result.records["blocked"].status is fs.Status.FAILED  # type: ignore[attr-defined]


async def test_a_timed_out_sync_attempt_is_retried(
    flowstone_runtime: fs.Runtime, release: threading.Event
) -> None:
    calls = 0

    @fs.asset(timeout=0.2, retry=fs.Retry(attempts=2, backoff=0))
    def second_time_lucky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait()
        return calls

    result = await flowstone_runtime.materialize([second_time_lucky])
    assert result["second_time_lucky"] == 2
    assert result.records["second_time_lucky"].attempts == 2


async def test_a_sync_asset_without_timeout_is_not_abandoned_when_it_finishes(
    flowstone_runtime: fs.Runtime,
) -> None:
    @fs.asset(timeout=5)
    def quick() -> int:
        return 7

    assert (await flowstone_runtime.materialize([quick]))["quick"] == 7
