"""The command line on PostgreSQL: a runtime factory for materialize, resume, runs and worker."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.cli import build_parser, load_target
from flowstone.ext.postgres import PostgresScatterCoordinator, PostgresStore, ScatterWorker

pytestmark = pytest.mark.postgres

FLOWS = """
import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from pathlib import Path

BROKEN = Path({broken!r})

@fs.asset
async def fetched() -> int:
    return 20

@fs.asset
async def summed(ctx: fs.Context, fetched: int) -> int:
    if BROKEN.exists():
        raise RuntimeError("the network went away")
    return fetched + ctx.resources.offset

PIPELINE = fs.Pipeline([fetched, summed], name="nightly")

async def make_runtime() -> fs.Runtime:
    store = PostgresStore({dsn!r}, schema={schema!r})
    return fs.Runtime(store=store, resources={{"offset": 1}}, pipelines=[PIPELINE])
"""


async def flowstone(*argv: str) -> tuple[int, str, str]:
    """Run the ``flowstone`` program in a process of its own, as after a crash."""
    done = await anyio.run_process([sys.executable, "-m", "flowstone", *argv], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_materialize_resume_and_runs_with_a_runtime_factory(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    flows = tmp_path / "cli_flows.py"
    flows.write_text(FLOWS.format(broken=str(broken), dsn=pg_dsn, schema=pg_schema))
    runtime = f"--runtime={flows}:make_runtime"

    code, out, err = await flowstone("materialize", "nightly", runtime, "--run-id=r1", "--json")
    assert code == 1, err
    assert json.loads(out)["assets"]["summed"]["status"] == "failed"

    broken.unlink()
    code, out, err = await flowstone("resume", "r1", runtime, "--json")
    assert code == 0, err
    resumed = json.loads(out)
    assert resumed["resumed"] and resumed["status"] == "succeeded"
    assert resumed["assets"]["fetched"]["reused"] and not resumed["assets"]["summed"]["reused"]

    code, out, err = await flowstone("materialize", f"{flows}:PIPELINE", runtime, "--run-id=r1")
    assert code == 0, err
    assert "succeeded  fetched (reused)" in out and "succeeded  summed (reused)" in out

    code, out, err = await flowstone("runs", runtime, "--json")
    assert code == 0, err
    (run,) = json.loads(out)
    assert run["run_id"] == "r1" and run["status"] == "succeeded"
    assert run["pipeline"] == "nightly" and run["selection"] == ["fetched", "summed"]
    code, out, _ = await flowstone("runs", runtime)
    assert out.startswith("r1  succeeded") and "nightly" in out

    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        assert await rt.load("summed") == 21


async def test_a_runtime_target_that_gives_no_runtime_is_one_line(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    flows = tmp_path / "cli_flows.py"
    flows.write_text(FLOWS.format(broken="x", dsn=pg_dsn, schema=pg_schema))
    code, _, err = await flowstone("runs", f"--runtime={flows}:PIPELINE")
    assert code == 2
    assert err.startswith(f"flowstone: --runtime {flows}:PIPELINE gives Pipeline, not a")
    assert err.count("\n") == 1


SCATTER = """
import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.ext.scatter import scatter

@fs.asset
@scatter(items=lambda deps: range(40), max_concurrent=4)
async def placed(ctx: fs.Context, item: int) -> str:
    # A mapping method is no resource: a worker without "cache" still serves this.
    cached = ctx.resources.get("cache", {{}})
    return cached.get(item) or ctx.resources.geo[item % 3]

PIPELINE = fs.Pipeline([placed], name="places")

def make_runtime() -> fs.Runtime:
    store = PostgresStore({dsn!r}, schema={schema!r})
    return fs.Runtime(store=store, resources={{"geo": "abc"}}, pipelines=[PIPELINE])
"""


def starting_runtime(store: PostgresStore, **options: Any) -> fs.Runtime:
    """The process that starts the run: it leaves every item to the workers."""
    runtime = fs.Runtime(store=store, **options)
    coordinator = PostgresScatterCoordinator(store, local_concurrency=0, poll_interval=0.05)
    runtime.coordinators.register("scatter", coordinator)
    return runtime


class Refusals(logging.Handler):
    """Counts the worker's refusals and wakes a waiter on the first."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self.first = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.first.set()


async def test_a_worker_lacking_a_resource_claims_nothing_and_the_run_goes_on(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    flows = tmp_path / "cli_scatter.py"
    flows.write_text(SCATTER.format(dsn=pg_dsn, schema=pg_schema))
    pipeline = load_target(f"{flows}:PIPELINE")
    refusals = Refusals()
    logger = logging.getLogger("flowstone.postgres")
    logger.addHandler(refusals)
    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    await store.migrate()
    lacking = ScatterWorker(pg_dsn, pipeline, schema=pg_schema, poll_interval=0.05)
    serving = ScatterWorker(
        pg_dsn,
        pipeline,
        schema=pg_schema,
        resources={"geo": "abc"},
        stop_when_idle=True,
        idle_timeout=0.5,
        poll_interval=0.05,
    )
    try:
        async with starting_runtime(store, resources={"geo": "abc"}) as runtime:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lacking.run)

                async def serve_once_refused() -> None:
                    with anyio.fail_after(30):
                        await refusals.first.wait()
                    await serving.run()

                tg.start_soon(serve_once_refused)
                result = await runtime.materialize(pipeline, raise_on_error=False)
                lacking.stop()
    finally:
        logger.removeHandler(refusals)
    assert result.ok, result.errors
    assert result["placed"] == ["abc"[i % 3] for i in range(40)]
    assert lacking.stats.items == 0 and lacking.stats.recorded == 0
    (reason,) = lacking.stats.skipped.values()
    assert "'geo'" in reason and "--runtime" in reason
    assert len(refusals.messages) == 1 and "'geo'" in refusals.messages[0]
    assert serving.stats.items == 40


async def test_the_worker_command_runs_items_with_the_runtime_factorys_resources(
    pg_dsn: str, pg_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "cli_scatter.py"
    flows.write_text(SCATTER.format(dsn=pg_dsn, schema=pg_schema))
    args = build_parser().parse_args(
        ["worker", f"--runtime={flows}:make_runtime", "--pipeline=places", "--stop-when-idle=1"]
    )
    pipeline = load_target(f"{flows}:PIPELINE")
    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    await store.migrate()
    async with starting_runtime(store, resources={"geo": "abc"}) as runtime:
        async with anyio.create_task_group() as tg:

            async def command() -> None:
                assert await args.func(args) == 0

            tg.start_soon(command)
            result = await runtime.materialize(pipeline)
    assert result["placed"] == ["abc"[i % 3] for i in range(40)]
    assert "40 item(s) run" in capsys.readouterr().out


async def test_the_worker_command_takes_a_runtime_or_a_database_not_both(
    pg_dsn: str, tmp_path: Path
) -> None:
    args = build_parser().parse_args(
        ["worker", "--runtime=x:y", f"--dsn={pg_dsn}", "--pipeline=places"]
    )
    with pytest.raises(fs.ConfigurationError, match="not both"):
        await args.func(args)
