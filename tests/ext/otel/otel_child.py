"""A process running a three-asset pipeline on a PostgresStore with OTelSink, for the
trace-continuity tests.

``python otel_child.py run --dsn … --schema … --spans FILE [--die]``

Spans go to the OpenTelemetry SDK with an exporter that appends one JSON line per finished
span to ``FILE`` (name, ids, parent, links, attributes). With ``--die`` the asset ``second``
SIGKILLs its own process as it starts (after ``first`` is durable), so the run is left
running in the store with its run span never ended. Without it the process resumes the run
(or starts it) and prints one JSON line: the run's status and whether it was resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence

import anyio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import flowstone as fs
from flowstone.ext.otel import OTelSink
from flowstone.ext.postgres import PostgresStore

parser = argparse.ArgumentParser()
parser.add_argument("role", choices=["run"])
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--spans", required=True)
parser.add_argument("--run-id", default="traced")
parser.add_argument("--die", action="store_true")
ARGS = parser.parse_args()


class FileExporter(SpanExporter):
    """Appends each finished span to a file as one JSON line."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(ARGS.spans, "a") as out:
            for span in spans:
                assert span.context is not None
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": f"{span.context.trace_id:032x}",
                            "span_id": f"{span.context.span_id:016x}",
                            "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                            "links": [f"{link.context.span_id:016x}" for link in span.links],
                            "attributes": dict(span.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


@fs.asset
def first() -> int:
    return 1


@fs.asset
def second(first: int) -> int:
    if ARGS.die:
        os.kill(os.getpid(), signal.SIGKILL)
    return first + 1


@fs.asset
def third(second: int) -> int:
    return second + 1


PIPELINE = fs.Pipeline([first, second, third], name="traced")


async def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    sink = OTelSink(tracer_provider=provider)
    # Records are written as they happen, so ``first`` is durable before ``second`` starts.
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema, write_behind=False)
    async with fs.Runtime(store=store, event_sinks=[sink], pipelines=[PIPELINE]) as rt:
        if await rt.store.get_run(ARGS.run_id) is None:
            result = await rt.materialize(PIPELINE, run_id=ARGS.run_id)
        else:
            result = await rt.resume(ARGS.run_id)
    provider.shutdown()
    sys.stdout.write(json.dumps({"status": result.status.value, "resumed": result.resumed}) + "\n")


anyio.run(main)
