"""Canonical partition keys: one partition is one stored value, however its key is written."""

from __future__ import annotations

import pytest

import flowstone as fs

DAYS = fs.DailyPartitions(start="2025-01-01", end="2025-02-01")


def day_pipeline(calls: list[str]) -> fs.Pipeline:
    @fs.asset(partitions=DAYS)
    async def raw(ctx: fs.Context) -> str:
        calls.append(f"raw {ctx.partition}")
        return f"raw of {ctx.partition}"

    @fs.asset(partitions=DAYS)
    async def report(raw: str) -> str:
        calls.append("report")
        return raw.upper()

    return fs.Pipeline([raw, report])


async def test_a_key_written_two_ways_is_one_partition(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []
    pipeline = day_pipeline(calls)
    first = await flowstone_runtime.materialize(pipeline, "report", partition="2025-1-2")
    assert first.partition == "2025-01-02"
    assert first.records["raw"].partition == "2025-01-02"
    second = await flowstone_runtime.materialize(pipeline, "report", partition="2025-01-02")
    assert second.records["raw"].reused  # the same partition: not computed again
    assert calls == ["raw 2025-01-02", "report", "report"]
    io = flowstone_runtime.io_managers.get("memory")
    assert await io.list_partitions("raw") == ["2025-01-02"]  # type: ignore[attr-defined]
    assert await flowstone_runtime.load("raw", "2025-1-02") == "raw of 2025-01-02"
    assert await flowstone_runtime.exists("raw", "2025-01-2")
    states = await flowstone_runtime.status(pipeline, partition="2025-1-2")
    assert states["raw"].partition == "2025-01-02" and states["raw"].current
    history = await flowstone_runtime.history("raw", "2025-1-2")
    assert [r.partition for r in history] == ["2025-01-02", "2025-01-02"]  # computed, reused


async def test_invalidate_and_backfill_use_the_canonical_key(
    flowstone_runtime: fs.Runtime,
) -> None:
    calls: list[str] = []
    pipeline = day_pipeline(calls)
    result = await flowstone_runtime.backfill(
        pipeline, partitions=["2025-1-3", "2025-01-03", "2025-01-04"]
    )
    assert list(result.outcomes) == ["2025-01-03", "2025-01-04"]
    assert sorted(c for c in calls if c.startswith("raw")) == ["raw 2025-01-03", "raw 2025-01-04"]
    assert await flowstone_runtime.invalidate("raw", "2025-1-3", downstream=pipeline) == [
        "raw",
        "report",
    ]
    states = await flowstone_runtime.status(pipeline, partition="2025-01-03")
    assert {s.state for s in states.values()} == {"stale"}
    assert (await flowstone_runtime.status(pipeline, partition="2025-01-04"))["raw"].current


async def test_a_partitioned_asset_needs_its_key_to_be_read(flowstone_runtime: fs.Runtime) -> None:
    pipeline = day_pipeline([])
    await flowstone_runtime.materialize(pipeline, partition="2025-01-05")
    for read in (flowstone_runtime.load, flowstone_runtime.exists):
        with pytest.raises(fs.PartitionError, match=r"'raw'.*partitioned; pass partition="):
            await read("raw")
    with pytest.raises(fs.PartitionError, match="'raw'"):
        await flowstone_runtime.load("raw", "2025-13-01")


async def test_after_invalidate_status_and_exists_agree(flowstone_runtime: fs.Runtime) -> None:
    pipeline = day_pipeline([])
    await flowstone_runtime.materialize(pipeline, partition="2025-01-06")
    await flowstone_runtime.invalidate("report", "2025-01-06")
    state = (await flowstone_runtime.status(pipeline, partition="2025-01-06"))["report"]
    assert state.state == "stale"
    assert await flowstone_runtime.exists("report", "2025-01-06")
    assert await flowstone_runtime.load("report", "2025-01-06") == "RAW OF 2025-01-06"


async def test_loading_by_name_in_a_new_runtime_says_the_asset_is_partitioned() -> None:
    io = fs.MemoryIOManager()
    async with fs.Runtime(io_managers={"shared": io}, default_io_manager="shared") as first:
        await first.materialize(day_pipeline([]), partition="2025-01-07")
    async with fs.Runtime(io_managers={"shared": io}, default_io_manager="shared") as fresh:
        with pytest.raises(fs.PartitionError, match=r"'raw'.*stored by partition \('2025-01-07'\)"):
            await fresh.load("raw")
        with pytest.raises(fs.ValueNotFoundError, match="'ghost'"):
            await fresh.load("ghost")
