"""Trace continuity: a resumed run continues its trace (in another process, on
PostgreSQL), links to the earlier attempt, and does not emit its earlier work again."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import flowstone as fs
from child_process import Child, command_args
from flowstone.ext.otel import TRACEPARENT_TAG
from flowstone.ext.postgres import PostgresStore
from otel_sdk import Telemetry

CHILD = Path(__file__).with_name("otel_child.py")


def read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_run_resumed_in_another_process_continues_its_trace(
    tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    env = dict(os.environ)
    src = str(Path(fs.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])

    def spawn(spans: Path, **options: Any) -> Child:
        args = command_args("run", pg_dsn, pg_schema, spans=spans, **options)
        return Child(sys.executable, CHILD, args, env, tmp_path)

    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    crashed = spawn(before, die=True)
    code = await anyio.to_thread.run_sync(lambda: crashed.proc.wait(60))
    assert code == -signal.SIGKILL, crashed.output()
    assert await spawn(after).finish(timeout=60) == {"status": "succeeded", "resumed": True}

    async with PostgresStore(pg_dsn, schema=pg_schema) as store:
        run = await store.get_run("traced")
    assert run is not None
    _, trace_id, first_run_span, _ = run.tags[TRACEPARENT_TAG].split("-")

    # The killed attempt exported the span of what it finished; its run span never ended.
    earlier = read_spans(before)
    assert [s["name"] for s in earlier] == ["flowstone.materialize first"]
    assert earlier[0]["trace_id"] == trace_id and earlier[0]["parent"] == first_run_span

    later = {s["name"]: s for s in read_spans(after)}
    assert set(later) == {
        "flowstone.run",
        "flowstone.materialize second",
        "flowstone.materialize third",
    }  # ``first`` was done before: not emitted again
    resumed = later["flowstone.run"]
    assert resumed["trace_id"] == trace_id
    assert resumed["parent"] == first_run_span
    assert resumed["links"] == [first_run_span]
    assert resumed["attributes"]["flowstone.run.resumed"] is True
    for name in ("flowstone.materialize second", "flowstone.materialize third"):
        assert later[name]["trace_id"] == trace_id
        assert later[name]["parent"] == resumed["span_id"]


async def test_a_run_resumed_in_the_same_process_links_to_its_first_attempt(
    telemetry: Telemetry,
) -> None:
    fixed: list[bool] = []

    @fs.asset
    def one() -> int:
        return 1

    @fs.asset
    def two(one: int) -> int:
        if not fixed:
            raise RuntimeError("not yet")
        return one + 1

    pipeline = fs.Pipeline([one, two], name="flaky")
    async with fs.Runtime(event_sinks=[telemetry.sink()]) as rt:
        failed = await rt.materialize(pipeline, raise_on_error=False)
        first = telemetry.named("flowstone.run")
        telemetry.spans_exporter.clear()
        fixed.append(True)
        tracer = telemetry.tracer_provider.get_tracer("app")
        with tracer.start_as_current_span("POST /retry") as request:
            result = await rt.resume(failed.run_id)
    assert result.ok and result.resumed
    second = telemetry.named("flowstone.run")
    assert first.context is not None and second.context is not None
    assert second.context.trace_id == first.context.trace_id
    assert second.parent is not None and second.parent.span_id == first.context.span_id
    assert [link.context.span_id for link in second.links] == [
        first.context.span_id,
        request.get_span_context().span_id,
    ]
    assert [s.name for s in telemetry.spans() if s.name.startswith("flowstone.materialize")] == [
        "flowstone.materialize two"
    ]
