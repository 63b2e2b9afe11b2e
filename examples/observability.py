"""Observability: traces, Prometheus metrics, JSON logs, live events and health.

Run it with ``python examples/observability.py [--port 9464] [--serve]``. It shows:

- the OpenTelemetry SDK set up by the application (flowstone only uses it): spans kept in
  memory and printed as a tree at the end, metrics exposed to Prometheus on ``/metrics``
  by ``opentelemetry-exporter-prometheus``;
- ``OTelSink`` turning a run into a ``flowstone.run`` trace under the application's own
  span, with one ``flowstone.materialize {asset}`` span per asset and a retry as a span
  event;
- ``ctx.log`` lines as JSON (``flowstone.logging.JSONFormatter``) carrying the run id,
  pipeline, asset, partition and attempt;
- ``runtime.subscribe()`` printing the run's events as they happen;
- ``runtime.health()``.

With ``--serve`` it keeps serving ``/metrics`` until its standard input closes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import urllib.request
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import start_http_server

import flowstone as fs
import flowstone.logging
from flowstone.ext.otel import OTelSink

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["main", "orders", "pipeline", "print_tree", "report", "scrape", "totals"]

attempts: list[int] = []


@fs.asset(retry=fs.Retry(attempts=3, backoff=0))
def orders() -> list[dict[str, object]]:
    """Today's orders (a flaky source: its first attempt fails)."""
    attempts.append(1)
    if len(attempts) == 1:
        raise ConnectionError("the shop's API timed out")
    return [{"id": i, "total": 10 * i} for i in range(1, 6)]


@fs.asset
def totals(ctx: fs.Context, orders: list[dict[str, object]]) -> int:
    """The day's revenue."""
    ctx.log.info("summing %d orders", len(orders))
    return sum(int(str(o["total"])) for o in orders)


@fs.asset
def report(totals: int) -> str:
    """A one-line report."""
    return f"revenue: {totals}"


pipeline = fs.Pipeline([orders, totals, report], name="shop")


def print_tree(spans: Sequence[ReadableSpan]) -> None:
    """Print spans as a tree, children under their parent."""
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    ids = {s.context.span_id for s in spans if s.context is not None}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent and span.parent.span_id in ids else None
        by_parent.setdefault(parent, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in by_parent.get(parent, []):
            events = ", ".join(e.name for e in span.events)
            note = f"  [{events}]" if events else ""
            print(f"{'  ' * depth}{span.name}{note}")
            if span.context is not None:
                show(span.context.span_id, depth + 1)

    show(None, 0)


def scrape(url: str) -> str:
    """What Prometheus would read from ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def main(argv: Sequence[str] | None = None) -> None:
    """Run the pipeline with every observability feature on (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="the /metrics port (0: any free)")
    parser.add_argument("--serve", action="store_true", help="serve until stdin closes")
    args = parser.parse_args(argv)

    # The application sets up OpenTelemetry; flowstone never installs a provider itself.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    server, _ = start_http_server(args.port, addr="127.0.0.1")
    port = server.server_port

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(flowstone.logging.JSONFormatter())
    logging.getLogger("flowstone").addHandler(handler)
    logging.getLogger("flowstone").setLevel(logging.INFO)

    sink = OTelSink(tracer_provider=tracer_provider, meter_provider=meter_provider)
    tracer = tracer_provider.get_tracer("shop")
    async with fs.Runtime(event_sinks=[sink]) as rt:
        async with rt.subscribe() as events, anyio.create_task_group() as tg:

            async def watch() -> None:
                async for event in events:
                    print(f"event: {type(event).__name__} {getattr(event, 'asset', '')}")
                    if isinstance(event, flowstone.events.RunFinished):
                        return

            tg.start_soon(watch)
            with tracer.start_as_current_span("GET /daily-report"):
                result = await rt.materialize(pipeline)
        print(result["report"])
        health = await rt.health()
        for component in health.components:
            print(f"health: {component.name} {component.status.value}")

    print("trace:")
    print_tree(spans.get_finished_spans())
    url = f"http://127.0.0.1:{port}/metrics"
    scraped = await anyio.to_thread.run_sync(scrape, url)
    print("metrics:")
    for line in scraped.splitlines():
        if line.startswith("flowstone_") and not line.startswith(
            "flowstone_materialization_duration"
        ):
            print(f"  {line}")
    if args.serve:
        print(f"serving {url}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
    server.shutdown()


if __name__ == "__main__":
    anyio.run(main)
