"""The context an asset receives: its logger shows who logged."""

from __future__ import annotations

import logging

import pytest

import flowstone as fs


async def test_ctx_log_lines_show_the_asset_partition_and_run(
    flowstone_runtime: fs.Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    @fs.asset(partitions=fs.StaticPartitions(["eu-50%"]))
    async def chatty(ctx: fs.Context) -> int:
        ctx.log.info("fetched %d rows", 3, extra={"source": "api"})
        ctx.log.warning("no args, 100% literal")
        return 3

    with caplog.at_level(logging.INFO, logger="flowstone"):
        result = await flowstone_runtime.materialize([chatty], partition="eu-50%")
    fetched, literal = caplog.records
    run = result.run_id
    assert (
        fetched.getMessage()
        == f"[asset=chatty partition=eu-50% run={run} source=api] fetched 3 rows"
    )
    assert (
        literal.getMessage() == f"[asset=chatty partition=eu-50% run={run}] no args, 100% literal"
    )
    assert (fetched.asset, fetched.run_id, fetched.source) == ("chatty", run, "api")  # type: ignore[attr-defined]
    assert fetched.filename == "test_context.py"  # the caller's line, not the adapter's
