"""OTelSink's spans: run, assets, scatter, branches, routes, retries, failures, parents."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.trace import StatusCode

import flowstone as fs
from flowstone.ext import gates
from flowstone.ext.otel import TRACEPARENT_TAG, OTelSink
from flowstone.ext.parallel import Branches, branch, parallel
from flowstone.ext.routing import choice, routed_from, router
from flowstone.ext.scatter import scatter
from otel_sdk import Telemetry
from plugin_imports import import_error_without

SECRET = "s3cr3t-value-7f1c"


@fs.asset
def source() -> str:
    return SECRET


@fs.asset
def length(source: str) -> int:
    return len(source)


def attributes_of(telemetry: Telemetry) -> list[str]:
    """Every attribute value and event attribute value of every span, as text."""
    texts: list[str] = []
    for span in telemetry.spans():
        texts += [str(v) for v in (span.attributes or {}).values()]
        for event in span.events:
            texts += [str(v) for v in (event.attributes or {}).values()]
    return texts


async def test_a_run_is_one_trace_with_an_asset_span_per_asset(telemetry: Telemetry) -> None:
    pipeline = fs.Pipeline([source, length], name="lengths")
    async with fs.Runtime(event_sinks=[telemetry.sink()]) as rt:
        result = await rt.materialize(pipeline)
        stored = await rt.store.get_run(result.run_id)
    run = telemetry.named("flowstone.run")
    assets = [
        telemetry.named("flowstone.materialize source"),
        telemetry.named("flowstone.materialize length"),
    ]
    assert run.parent is None
    assert run.attributes is not None
    assert run.attributes["flowstone.run.id"] == result.run_id
    assert run.attributes["flowstone.pipeline"] == "lengths"
    assert run.attributes["flowstone.status"] == "succeeded"
    assert run.status.status_code is StatusCode.UNSET
    for span in assets:
        assert span.context is not None and run.context is not None
        assert span.context.trace_id == run.context.trace_id
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert span.attributes is not None
        assert span.attributes["flowstone.run.id"] == result.run_id
        assert span.attributes["flowstone.status"] == "succeeded"
        assert span.attributes["flowstone.attempt"] == 1
        assert span.attributes["flowstone.reused"] is False
        assert (
            span.attributes["flowstone.data_version"]
            == result.records[
                span.attributes["flowstone.asset"]  # type: ignore[index]
            ].data_version
        )
        assert run.start_time is not None and span.start_time is not None
        assert run.end_time is not None and span.end_time is not None
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    # The run's trace context is stored with it, naming the run span.
    assert stored is not None and run.context is not None
    traceparent = stored.tags[TRACEPARENT_TAG]
    assert traceparent.startswith(f"00-{run.context.trace_id:032x}-{run.context.span_id:016x}-")
    assert SECRET not in attributes_of(telemetry)


async def test_a_run_inside_a_span_is_its_child(telemetry: Telemetry) -> None:
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /refresh") as request:
        await fs.Runtime(event_sinks=[telemetry.sink()]).materialize([source])
    run = telemetry.named("flowstone.run")
    assert run.parent is not None
    assert run.parent.span_id == request.get_span_context().span_id
    assert run.context is not None
    assert run.context.trace_id == request.get_span_context().trace_id


async def test_a_failure_sets_error_status_type_and_records_the_exception(
    telemetry: Telemetry,
) -> None:
    calls: list[int] = []

    @fs.asset(retry=fs.Retry(attempts=2, backoff=0))
    def broken(ctx: fs.Context) -> int:
        calls.append(ctx.attempt)
        raise KeyError("missing")

    result = await fs.Runtime(event_sinks=[telemetry.sink()]).materialize(
        [broken], raise_on_error=False
    )
    assert not result.ok and calls == [1, 2]
    span = telemetry.named("flowstone.materialize broken")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "KeyError"
    assert span.attributes["flowstone.status"] == "failed"
    assert span.attributes["flowstone.attempt"] == 2
    retries = [e for e in span.events if e.name == "flowstone.retry"]
    assert len(retries) == 1
    assert retries[0].attributes is not None
    assert retries[0].attributes["flowstone.attempt"] == 1
    assert retries[0].attributes["error.type"] == "KeyError"
    exceptions = [e for e in span.events if e.name == "exception"]
    assert len(exceptions) == 1 and exceptions[0].attributes is not None
    assert "AssetExecutionError" in str(exceptions[0].attributes["exception.type"])
    run = telemetry.named("flowstone.run")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes is not None
    assert run.attributes["error.type"] == "KeyError"
    assert run.attributes["flowstone.status"] == "failed"


async def test_a_skipped_asset_gets_a_span_saying_why(telemetry: Telemetry) -> None:
    @fs.asset
    def broken() -> int:
        raise ValueError("no")

    @fs.asset
    def after(broken: int) -> int:
        return broken

    await fs.Runtime(event_sinks=[telemetry.sink()]).materialize(
        [broken, after], raise_on_error=False
    )
    span = telemetry.named("flowstone.materialize after")
    assert span.attributes is not None
    assert span.attributes["flowstone.status"] == "skipped"
    assert span.attributes["flowstone.skip.reason"] == "input 'broken' failed"


async def test_a_waiting_asset_ends_its_span_waiting_and_the_run_is_no_error(
    telemetry: Telemetry,
) -> None:
    @fs.asset
    @gates.approval(timeout=3600)
    async def publish(approval: gates.Approval) -> str:
        return "published"

    @fs.asset
    def announce(publish: str) -> str:
        return publish

    result = await fs.Runtime(event_sinks=[telemetry.sink()]).materialize([publish, announce])
    assert result.status is fs.RunStatus.WAITING
    for name in ("publish", "announce"):
        span = telemetry.named(f"flowstone.materialize {name}")
        assert span.attributes is not None
        assert span.attributes["flowstone.status"] == "waiting"
    run = telemetry.named("flowstone.run")
    assert run.attributes is not None and run.attributes["flowstone.assets.waiting"] == 2
    assert run.status.status_code is not StatusCode.ERROR


async def test_a_reused_upstream_value_is_a_span_marked_reused(telemetry: Telemetry) -> None:
    pipeline = fs.Pipeline([source, length])
    async with fs.Runtime(event_sinks=[telemetry.sink()]) as rt:
        await rt.materialize(pipeline)
        telemetry.spans_exporter.clear()
        await rt.materialize(pipeline, "length")
    span = telemetry.named("flowstone.materialize source")
    assert span.attributes is not None
    assert span.attributes["flowstone.reused"] is True


async def test_a_scatter_is_a_child_of_its_asset_with_counts(telemetry: Telemetry) -> None:
    @fs.asset
    def keys() -> list[str]:
        return [f"k{i}" for i in range(20)]

    @fs.asset
    @scatter(
        items=lambda deps: deps["keys"], key=lambda k: k, max_concurrent=4, tolerated_failure=0.5
    )
    async def upper(item: str) -> str:
        if item == "k3":
            raise ValueError(item)
        return item.upper()

    await fs.Runtime(event_sinks=[telemetry.sink(item_spans=1.0)]).materialize(
        [keys, upper], raise_on_error=False
    )
    asset = telemetry.named("flowstone.materialize upper")
    span = telemetry.named("flowstone.scatter upper")
    assert span.parent is not None and asset.context is not None
    assert span.parent.span_id == asset.context.span_id
    assert span.attributes is not None
    assert span.attributes["flowstone.scatter.total"] == 20
    assert span.attributes["flowstone.scatter.succeeded"] == 19
    assert span.attributes["flowstone.scatter.failed"] == 1
    assert span.attributes["flowstone.scatter.max_concurrent"] == 4
    items = [s for s in telemetry.spans() if s.name == "flowstone.scatter.item upper"]
    assert len(items) == 20
    assert span.context is not None
    assert all(i.parent is not None and i.parent.span_id == span.context.span_id for i in items)
    failed = [i for i in items if i.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1 and failed[0].attributes is not None
    assert failed[0].attributes["flowstone.scatter.index"] == 3
    # Item keys are the user's data: they are not attributes.
    assert not any(text.startswith("k") and text[1:].isdigit() for text in attributes_of(telemetry))


async def test_item_spans_are_sampled_by_key_and_off_by_default(telemetry: Telemetry) -> None:
    @fs.asset
    @scatter(items=lambda deps: [str(i) for i in range(400)], key=lambda k: k, max_concurrent=8)
    async def echo(item: str) -> str:
        return item

    await fs.Runtime(event_sinks=[telemetry.sink()]).materialize([echo])
    assert not [s for s in telemetry.spans() if s.name.startswith("flowstone.scatter.item")]
    telemetry.spans_exporter.clear()
    await fs.Runtime(event_sinks=[telemetry.sink(item_spans=0.25)]).materialize([echo])
    sampled = [s for s in telemetry.spans() if s.name.startswith("flowstone.scatter.item")]
    assert 50 < len(sampled) < 150
    indices = {s.attributes["flowstone.scatter.index"] for s in sampled if s.attributes}
    telemetry.spans_exporter.clear()
    await fs.Runtime(event_sinks=[telemetry.sink(item_spans=0.25)]).materialize([echo])
    again = [s for s in telemetry.spans() if s.name.startswith("flowstone.scatter.item")]
    assert {s.attributes["flowstone.scatter.index"] for s in again if s.attributes} == indices


async def test_branches_are_spans_and_route_decisions_span_events(telemetry: Telemetry) -> None:
    @fs.asset
    def one() -> int:
        return 1

    @fs.asset
    def two() -> int:
        return 2

    @fs.asset
    @parallel(branch("one"), branch("two"))
    async def both(branches: Branches) -> int:
        return int(sum(branches.values()))

    @fs.asset
    @router(choice("big", when=lambda deps: deps["both"] > 2), default="small")
    async def pick(both: int) -> None: ...

    @fs.asset
    @routed_from("pick")
    def big(both: int) -> str:
        return "big"

    @fs.asset
    @routed_from("pick")
    def small(both: int) -> str:
        return "small"

    result = await fs.Runtime(event_sinks=[telemetry.sink()]).materialize(
        [one, two, both, pick, big, small]
    )
    assert result["big"] == "big"
    parallel_span = telemetry.named("flowstone.materialize both")
    for name in ("one", "two"):
        span = telemetry.named(f"flowstone.branch {name}")
        assert span.parent is not None and parallel_span.context is not None
        assert span.parent.span_id == parallel_span.context.span_id
        assert span.attributes is not None
        assert span.attributes["flowstone.status"] == "succeeded"
    router_span = telemetry.named("flowstone.materialize pick")
    routes = [e for e in router_span.events if e.name == "flowstone.route"]
    assert len(routes) == 1 and routes[0].attributes is not None
    assert routes[0].attributes["flowstone.route.chosen"] == "big"
    assert routes[0].attributes["flowstone.route.via"] == "choice"
    small_span = telemetry.named("flowstone.materialize small")
    assert small_span.attributes is not None
    assert small_span.attributes["flowstone.status"] == "skipped"


async def test_the_sink_is_named_otel_by_entry_point(telemetry: Telemetry) -> None:
    runtime = fs.Runtime(event_sinks=["otel"])
    (sink,) = runtime.event_sinks
    assert isinstance(sink, OTelSink)
    assert runtime.run_taggers == (sink,)


def test_item_spans_must_be_a_fraction() -> None:
    for bad in (-0.1, 1.5, "all", True):
        with pytest.raises(fs.ConfigurationError, match="item_spans"):
            OTelSink(item_spans=bad)  # type: ignore[arg-type]


GLOBAL_SCRIPT = """
import anyio
from opentelemetry import trace, metrics
import flowstone as fs
from flowstone.ext.otel import OTelSink

@fs.asset
def one() -> int:
    return 1

sink = OTelSink()
anyio.run(lambda: fs.Runtime(event_sinks=[sink]).materialize([one]))
print(type(trace.get_tracer_provider()).__name__, type(metrics.get_meter_provider()).__name__)

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # installed by the application after the sink was made
anyio.run(lambda: fs.Runtime(event_sinks=[sink]).materialize([one]))
print(sorted(s.name for s in exporter.get_finished_spans()))
"""


def test_the_global_providers_are_used_and_never_installed() -> None:
    out = subprocess.run(
        [sys.executable, "-c", GLOBAL_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.strip().splitlines()
    assert first == "ProxyTracerProvider _ProxyMeterProvider"
    assert second == "['flowstone.materialize one', 'flowstone.run']"


def test_the_plugin_without_its_extra_names_it() -> None:
    assert import_error_without("opentelemetry", "flowstone.ext.otel") == (
        "MissingExtraError flowstone.ext.otel needs opentelemetry-api: "
        "pip install 'flowstone[otel]'"
    )


async def test_check_results_are_events_of_the_run_span(telemetry: Telemetry) -> None:
    @fs.check(asset="source", severity="error")
    def not_secret(source: str) -> bool:
        return source != SECRET

    @fs.check(asset="source")
    def broken(source: str) -> bool:
        raise LookupError("nope")

    result = await fs.Runtime(event_sinks=[telemetry.sink()]).materialize(
        [source, length, not_secret, broken], raise_on_error=False
    )
    assert result.skipped == ("length",)
    run = telemetry.named("flowstone.run")
    events = {e.attributes["flowstone.check"]: e for e in run.events if e.name == "flowstone.check"}
    assert set(events) == {"not_secret", "broken"}
    blocking = events["not_secret"].attributes
    assert blocking["flowstone.asset"] == "source"
    assert (blocking["flowstone.check.severity"], blocking["flowstone.check.passed"]) == (
        "error",
        False,
    )
    assert "error.type" not in blocking
    assert events["broken"].attributes["error.type"] == "LookupError"
    assert run.status.status_code is StatusCode.ERROR
