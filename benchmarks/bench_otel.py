"""OpenTelemetry overhead: what ``OTelSink`` adds per asset on the 1,000-asset chain.

Both sides run flowstone on the same chain (``bench_core.chain``) with records on. The
baseline has no event sink; the measured side has an ``OTelSink`` on the OpenTelemetry SDK
with an in-memory span exporter (``SimpleSpanProcessor``, so every span is exported inside
the run) and an in-memory metric reader, so the figure includes building the events, the
spans, the metric updates and the export. A second row compares with a sink that only
counts events, to show the sink's own share. Each figure is the best of several
repetitions after a warm-up, the sides interleaved. Target: at most +15 µs per asset.

A third row sets what the sink adds beside what the SDK alone takes for the same work (one
span with the same attributes, exported, and one histogram value per asset, in a plain
loop): on a slow machine the SDK's own cost can exceed the target by itself, and the
difference is what flowstone's event path and sink cost.
"""

from __future__ import annotations

import gc
import math
from time import perf_counter
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flowstone as fs
from flowstone.ext.otel import OTelSink

from .bench_core import CountingSink, Workload, chain, pipeline_of

if TYPE_CHECKING:
    from flowstone.protocols import EventSink

    from . import Report

__all__ = ["TARGET_US", "run"]

#: The target: microseconds ``OTelSink`` may add per asset.
TARGET_US = 15.0


def _otel_sink() -> tuple[OTelSink, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    sink = OTelSink(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return sink, exporter


async def _timed(pipeline: fs.Pipeline, workload: Workload, sinks: list[EventSink]) -> float:
    async with fs.Runtime(event_sinks=sinks) as runtime:
        started = perf_counter()
        result = await runtime.materialize(pipeline)
        elapsed = perf_counter() - started
    if not result.ok or result[workload.final] != workload.expected:
        raise RuntimeError(f"{workload.name}: a wrong result: {result!r}")
    return elapsed


def sdk_floor_us(n: int, repeat: int) -> float:
    """Microseconds the SDK alone takes for what the sink asks of it per asset: one span
    (child of the run's, the same attributes, exported in memory) and one histogram value."""
    sink, exporter = _otel_sink()
    del sink
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_provider.get_tracer("floor")
    histogram = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("floor")
    duration = histogram.create_histogram("duration")
    run_span = tracer.start_span("run")
    context = trace.set_span_in_context(run_span)
    labels = [{"asset": f"a{i:04d}", "outcome": "succeeded"} for i in range(n)]
    best = math.inf
    for attempt in range(repeat + 1):
        exporter.clear()
        started = perf_counter()
        for i in range(n):
            span = tracer.start_span(
                "flowstone.materialize a",
                context=context,
                attributes={
                    "flowstone.run.id": "r",
                    "flowstone.asset": "a",
                    "flowstone.attempt": 1,
                },
            )
            span.set_attributes(
                {
                    "flowstone.status": "succeeded",
                    "flowstone.reused": False,
                    "flowstone.data_version": "v",
                }
            )
            span.end()
            duration.record(0.001, labels[i])
        if attempt:
            best = min(best, perf_counter() - started)
    return best / n * 1e6


async def run(report: Report) -> None:
    """Measure the chain without a sink, with a counting sink and with ``OTelSink``."""
    repeat = 3 if report.quick else 7
    workload = chain()
    pipeline = pipeline_of(workload)
    n = len(workload.nodes)
    best = {"none": math.inf, "counting": math.inf, "otel": math.inf}
    # One sink and SDK for every repetition, as an application keeps its providers: the
    # warm-up creates the metric series, later runs update them.
    sink, exporter = _otel_sink()
    spans = 0
    for attempt in range(repeat + 1):  # the first round is the warm-up
        for side in best:
            sinks: list[EventSink] = {"none": [], "counting": [CountingSink()], "otel": [sink]}[
                side
            ]
            exporter.clear()
            gc.collect()
            elapsed = await _timed(pipeline, workload, sinks)
            if side == "otel":
                spans = len(exporter.get_finished_spans())
            if attempt:
                best[side] = min(best[side], elapsed)
    if spans != n + 1:
        raise RuntimeError(f"expected {n + 1} spans, the exporter has {spans}")
    otel_us, none_us, counting_us = (best[s] / n * 1e6 for s in ("otel", "none", "counting"))
    added = otel_us - none_us
    verdict = "met" if added <= TARGET_US else "MISSED"
    report(
        f"{workload.name}, OTelSink + SDK in-memory (baseline: no sink)",
        otel_us,
        none_us,
        "µs/asset",
        f"adds {added:.1f} µs/asset; target <= +{TARGET_US:g} µs: {verdict}; {spans:,} spans",
    )
    floor = sdk_floor_us(n, repeat)
    report(
        f"{workload.name}, OTelSink + SDK in-memory (baseline: the SDK's own work)",
        added,
        floor,
        "µs/asset",
        f"what the sink adds beyond a sink-less run, beside what the SDK alone takes for the "
        f"same spans and histogram values: flowstone's share {added - floor:.1f} µs/asset",
    )
    report(
        f"{workload.name}, OTelSink + SDK in-memory (baseline: counting sink)",
        otel_us,
        counting_us,
        "µs/asset",
        f"the sink's own share: {otel_us - counting_us:.1f} µs/asset",
    )
