"""OTelSink's metrics: names, labels (never run id or partition), values; gates."""

from __future__ import annotations

import flowstone as fs
from flowstone.ext import gates
from flowstone.ext.scatter import scatter
from otel_sdk import Telemetry

DAYS = fs.StaticPartitions(["d1", "d2"])


@fs.asset(partitions=DAYS)
def daily(ctx: fs.Context) -> str:
    return f"day {ctx.partition}"


@fs.asset(partitions=DAYS)
def broken(daily: str) -> int:
    raise ValueError("no")


@fs.asset(partitions=DAYS)
def after(broken: int) -> int:
    return broken


@fs.asset
@scatter(items=lambda deps: list(range(10)), key=str, max_concurrent=2, tolerated_failure=0.5)
async def items(item: int) -> int:
    if item == 7:
        raise ValueError("seven")
    return item


async def test_runs_materializations_durations_and_items_are_counted(
    telemetry: Telemetry,
) -> None:
    pipeline = fs.Pipeline([daily, broken, after])
    async with fs.Runtime(event_sinks=[telemetry.sink()]) as rt:
        for day in ("d1", "d2"):
            await rt.materialize(pipeline, partition=day, raise_on_error=False)
        await rt.materialize(pipeline, "broken", partition="d1", raise_on_error=False)
        await rt.materialize([items])
    assert telemetry.counts("flowstone.runs") == {
        (("outcome", "failed"),): 3,
        (("outcome", "succeeded"),): 1,
    }
    assert telemetry.counts("flowstone.materializations") == {
        (("asset", "daily"), ("outcome", "succeeded")): 2,
        (("asset", "daily"), ("outcome", "reused")): 1,
        (("asset", "broken"), ("outcome", "failed")): 3,
        (("asset", "after"), ("outcome", "skipped")): 2,
        (("asset", "items"), ("outcome", "succeeded")): 1,
    }
    durations = {
        tuple(sorted(a.items())): p
        for a, p in telemetry.points("flowstone.materialization.duration")
    }
    assert durations[("asset", "daily"), ("outcome", "succeeded")].count == 2
    assert durations[("asset", "broken"), ("outcome", "failed")].count == 3
    assert (("asset", "daily"), ("outcome", "reused")) not in durations
    assert all(p.sum >= 0 for p in durations.values())
    assert telemetry.counts("flowstone.scatter.items") == {
        (("outcome", "succeeded"),): 9,
        (("outcome", "failed"),): 1,
    }
    for metric in (
        "flowstone.runs",
        "flowstone.materializations",
        "flowstone.materialization.duration",
        "flowstone.scatter.items",
    ):
        for attributes, _ in telemetry.points(metric):
            assert set(attributes) <= {"asset", "outcome"}, (metric, attributes)


@fs.asset
@gates.approval(timeout=3600, message="Publish?")
async def publish(approval: gates.Approval) -> str:
    return f"published by {approval.by}"


async def test_open_gates_are_counted_up_and_down(telemetry: Telemetry) -> None:
    async with fs.Runtime(event_sinks=[telemetry.sink()]) as rt:
        first = await rt.materialize([publish], run_id="r1")
        second = await rt.materialize([publish], run_id="r2")
        assert first.waiting and second.waiting
        assert telemetry.counts("flowstone.gates.open") == {(): 2}
        await rt.materialize([publish], run_id="r1")  # resumed, still waiting: not again
        assert telemetry.counts("flowstone.gates.open") == {(): 2}
        (gate, *_) = await gates.list_open(runtime=rt, run_id="r1")
        await gates.approve(gate.gate_id, by="alice", runtime=rt)
        assert (await rt.resume("r1", fs.Pipeline([publish])))["publish"] == "published by alice"
        assert telemetry.counts("flowstone.gates.open") == {(): 1}
        (gate, *_) = await gates.list_open(runtime=rt, run_id="r2")
        await gates.cancel(gate.gate_id, reason="not needed", runtime=rt)
        assert telemetry.counts("flowstone.gates.open") == {(): 0}


async def test_a_gate_wait_inside_a_run_is_a_span_of_its_asset(telemetry: Telemetry) -> None:
    rt = fs.Runtime(event_sinks=[telemetry.sink()])

    async def answer(opened: gates.OpenGate) -> None:
        await gates.send_signal(opened.token, {"ok": True}, runtime=rt)

    @fs.asset
    @gates.signal(timeout=600, hold=None, notify=answer)
    async def webhook(signal: gates.Signal) -> bool:
        return bool(signal.payload["ok"])

    async with rt:
        assert (await rt.materialize([webhook]))["webhook"] is True
    gate = telemetry.named("flowstone.gate webhook")
    asset = telemetry.named("flowstone.materialize webhook")
    assert gate.parent is not None and asset.context is not None
    assert gate.parent.span_id == asset.context.span_id
    assert gate.attributes is not None
    assert gate.attributes["flowstone.gate.status"] == "signalled"
    assert gate.attributes["flowstone.gate.kind"] == "signal"
    assert telemetry.counts("flowstone.gates.open") == {(): 0}
