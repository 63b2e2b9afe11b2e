"""OTelSink's metrics: names, labels (never run id or partition), values; the gate hook."""

from __future__ import annotations

from dataclasses import dataclass

import flowstone as fs
from flowstone.events import AssetEvent
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


@dataclass(frozen=True, slots=True, kw_only=True)
class GateOpened(AssetEvent):
    gate_id: str
    kind: str = "approval"


@dataclass(frozen=True, slots=True, kw_only=True)
class GateResolved(AssetEvent):
    gate_id: str
    status: str = "approved"


async def test_gate_events_are_counted_open_by_their_shape(telemetry: Telemetry) -> None:
    """Gate events are recognised by class name and status (see ``_gates``), so a gate
    plugin's events count without the sink importing it."""
    rt = fs.Runtime(event_sinks=[telemetry.sink()])
    for gate in ("g1", "g2", "g1"):  # g1 reported twice: counted once
        rt.emit(GateOpened(run_id="r", asset="approve", gate_id=gate))
    assert telemetry.counts("flowstone.gates.open") == {(): 2}
    rt.emit(GateResolved(run_id="r", asset="approve", gate_id="g1"))
    rt.emit(GateResolved(run_id="r", asset="approve", gate_id="never-opened"))
    assert telemetry.counts("flowstone.gates.open") == {(): 1}


async def test_a_gate_wait_inside_a_run_is_a_span_of_its_asset(telemetry: Telemetry) -> None:
    sink = telemetry.sink()

    @fs.asset
    def approve(ctx: fs.Context) -> str:
        ctx.runtime.emit(GateOpened(run_id=ctx.run_id, asset="approve", gate_id="g"))
        ctx.runtime.emit(GateResolved(run_id=ctx.run_id, asset="approve", gate_id="g"))
        return "ok"

    await fs.Runtime(event_sinks=[sink]).materialize([approve])
    gate = telemetry.named("flowstone.gate approve")
    asset = telemetry.named("flowstone.materialize approve")
    assert gate.parent is not None and asset.context is not None
    assert gate.parent.span_id == asset.context.span_id
    assert gate.attributes is not None
    assert gate.attributes["flowstone.gate.status"] == "approved"
    assert gate.attributes["flowstone.gate.kind"] == "approval"
    assert telemetry.counts("flowstone.gates.open") == {(): 0}
