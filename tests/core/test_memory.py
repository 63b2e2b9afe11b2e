"""In-memory defaults: the gate store, the IO manager and the event sinks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

import flowstone as fs
from flowstone.events import AssetFailed, AssetSkipped, Event, RunFinished
from flowstone.protocols import GateRecord, GateStatus, IOContext


def gate(gate_id: str, run_id: str = "r1") -> GateRecord:
    return GateRecord(
        gate_id=gate_id,
        run_id=run_id,
        asset="approve",
        partition=None,
        kind="approval",
        status=GateStatus.WAITING,
        created_at=datetime.now(UTC),
    )


async def test_gate_store_creates_once_and_resolves_once() -> None:
    store = fs.MemoryGateStore()
    first = await store.create(gate("g1"))
    again = await store.create(gate("g1").replace(asset="other"))
    assert again is first
    await store.create(gate("g2", run_id="r2"))
    assert [g.gate_id for g in await store.list_open()] == ["g1", "g2"]
    assert [g.gate_id for g in await store.list_open("r2")] == ["g2"]
    resolved = await store.resolve("g1", GateStatus.APPROVED, payload={"ok": True}, by="ana")
    assert resolved.status is GateStatus.APPROVED and resolved.resolved_by == "ana"
    assert resolved.resolved_at is not None
    unchanged = await store.resolve("g1", GateStatus.REJECTED)
    assert unchanged.status is GateStatus.APPROVED
    assert [g.gate_id for g in await store.list_open()] == ["g2"]
    with pytest.raises(KeyError):
        await store.resolve("missing", GateStatus.APPROVED)


async def test_memory_io_manager_round_trip() -> None:
    io = fs.MemoryIOManager()
    key = IOContext("a", "2025-01-01")
    assert not await io.exists(key)
    with pytest.raises(fs.ValueNotFoundError, match="'a' partition '2025-01-01'"):
        await io.load(key)
    await io.store(key, [1, 2])
    assert await io.load(key) == [1, 2]
    assert await io.list_partitions("a") == ["2025-01-01"]
    await io.delete(key)
    await io.delete(key)
    assert not await io.exists(key)


async def test_the_default_runtime_keeps_any_python_object() -> None:
    @fs.asset
    async def model() -> set[object]:
        return {object()}

    async with fs.Runtime() as runtime:
        result = await runtime.materialize([model])
        assert result["model"] is await runtime.load("model")
        assert repr(runtime.io_managers.get("memory")) == "MemoryIOManager(1 values)"
    assert repr(fs.MemoryIOManager(strict=True)) == "MemoryIOManager(0 values, strict)"


def test_logging_sink_logs_what_matters(caplog: pytest.LogCaptureFixture) -> None:
    sink = fs.LoggingSink()
    with caplog.at_level(logging.INFO, logger="flowstone"):
        sink.emit(AssetFailed(run_id="r", asset="a", error=ValueError("x"), attempt=2))
        sink.emit(AssetSkipped(run_id="r", asset="b", reason="input 'a' failed"))
        sink.emit(RunFinished(run_id="r", status="failed", duration=0.5))
    assert "asset a failed on attempt 2" in caplog.text
    assert "asset b skipped: input 'a' failed" in caplog.text
    assert "run r failed" in caplog.text


async def test_logging_sink_logs_every_event_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    @fs.asset(partitions=fs.StaticPartitions(["p"]))
    async def quiet() -> int:
        return 1

    with caplog.at_level(logging.DEBUG, logger="flowstone"):
        async with fs.Runtime(event_sinks=[fs.LoggingSink()]) as runtime:
            result = await runtime.materialize([quiet], partition="p")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "flowstone"]
    assert [level for level, _ in lines] == ["DEBUG", "DEBUG", "DEBUG", "INFO"]
    assert lines[0][1] == f"run {result.run_id} started for partition p: quiet"
    assert lines[1][1] == "asset quiet [p] attempt 1 started"
    assert lines[2][1].startswith("asset quiet [p] succeeded in ")
    assert lines[3][1].startswith(f"run {result.run_id} succeeded in ")


def test_logging_sink_logs_other_events_with_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="flowstone"):
        fs.LoggingSink().emit(Event(run_id="r", timestamp=1.5))
    assert caplog.records[0].getMessage() == "Event(run_id='r', timestamp=1.5)"


def test_memory_event_sink_filters() -> None:
    sink = fs.MemoryEventSink(types=(AssetSkipped,))
    sink.emit(AssetSkipped(run_id="r", asset="b", reason="x"))
    sink.emit(RunFinished(run_id="r", status="succeeded", duration=0.1))
    assert len(sink.events) == 1 and sink.of_type(AssetSkipped)
    sink.clear()
    assert not sink.events
