"""``flowstone worker``: run items of durable scatters beside the process that started them,
and resume runs whose gates were resolved or expired.

``flowstone worker --runtime myapp.flows:runtime --pipeline nightly`` serves the scatter
assets of a pipeline with the runtime the application builds (its ``PostgresStore``, IO
managers and resources); ``--dsn … --pipeline module:attr`` serves them with a bare
runtime over that database, for item functions that need no resources.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import types
from typing import TYPE_CHECKING, Any

import anyio

import flowstone as fs
from flowstone import ConfigurationError

from ._scatter_session import DEFAULT_LEASE
from ._store import PostgresStore
from ._worker import ScatterWorker

if TYPE_CHECKING:
    import argparse

    from flowstone import Pipeline, Runtime

__all__ = ["register_worker_cli"]

_DSN_ENV = "FLOWSTONE_DSN"


def register_worker_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``flowstone worker (--runtime MODULE:ATTR | --dsn …) --pipeline …`` to the CLI."""
    parser = subparsers.add_parser(
        "worker",
        help=(
            "run items of durable scatters beside the process that started them, and resume "
            "runs whose gates were resolved or expired"
        ),
        description=(
            "Join open durable scatter barriers of a pipeline and run their items, and resume "
            "its waiting runs once their gates are signalled, approved, rejected or past their "
            "deadline (each run exactly once across workers). Start as many as you like, on "
            "any machine that reaches the database and runs the same code."
        ),
    )
    parser.add_argument(
        "--runtime",
        default=None,
        metavar="MODULE:ATTR",
        help=(
            "a flowstone Runtime (or a function, sync or async, returning one) whose store is "
            "a PostgresStore, with the resources the item functions use"
        ),
    )
    parser.add_argument(
        "--dsn",
        default=None,
        help=f"postgresql:// connection string, without --runtime (default: ${_DSN_ENV})",
    )
    parser.add_argument(
        "--schema", default=None, help="the schema, without --runtime (default: flowstone)"
    )
    parser.add_argument(
        "--pipeline",
        required=True,
        metavar="MODULE:ATTR",
        help=(
            "the pipeline (module:attr, path/to/file.py:attr, or a module of assets), or the "
            "name of a pipeline the --runtime registers"
        ),
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="units run at once per barrier (default: each asset's max_concurrent)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        default=DEFAULT_LEASE,
        help=f"seconds claims outlive a silent worker (default: {DEFAULT_LEASE:g})",
    )
    parser.add_argument(
        "--stop-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this many seconds without work (default: run until interrupted)",
    )
    parser.set_defaults(func=_worker_command)


def _load_pipeline(target: str, runtime: Runtime | None) -> Pipeline:
    from flowstone.cli import load_target

    if runtime is not None and ":" not in target:
        try:
            return runtime.pipeline(target)
        except LookupError:
            pass
    try:
        obj = load_target(target)
    except Exception as exc:
        raise ConfigurationError(f"cannot load the pipeline {target!r}: {exc}") from exc
    if isinstance(obj, fs.Pipeline):
        return obj
    if isinstance(obj, fs.AssetDef | types.ModuleType):
        return fs.Pipeline([obj])
    if isinstance(obj, list | tuple):
        return fs.Pipeline(obj)
    raise ConfigurationError(f"{target} is not a pipeline, an asset, a list of assets or a module")


async def _worker_command(args: argparse.Namespace) -> int:
    if args.runtime is not None:
        if args.dsn is not None or args.schema is not None:
            raise ConfigurationError(
                "give --runtime or --dsn/--schema, not both: the runtime's store says where "
                "the database is"
            )
        from flowstone.cli import load_runtime

        runtime = await load_runtime(args.runtime)
        async with runtime:
            return await _serve(args, runtime, _load_pipeline(args.pipeline, runtime))
    dsn = args.dsn or os.environ.get(_DSN_ENV)
    if not dsn:
        raise ConfigurationError(f"no database given: pass --runtime or --dsn, or set ${_DSN_ENV}")
    return await _serve(args, dsn, _load_pipeline(args.pipeline, None))


async def _serve(args: argparse.Namespace, target: str | Runtime, pipeline: Pipeline) -> int:
    from ._gate_worker import GateResumer, has_gates

    scatters = any(asset_def.kind == "scatter" for asset_def in pipeline.assets.values())
    gated = has_gates(pipeline)
    if not scatters and not gated:
        raise ConfigurationError("the pipeline has no scatter or gate assets for a worker to serve")
    async with contextlib.AsyncExitStack() as stack:
        if isinstance(target, str):
            store = PostgresStore(target, schema=args.schema or "flowstone")
            runtime = await stack.enter_async_context(fs.Runtime(store=store))
        else:
            runtime = target
        worker = (
            ScatterWorker(
                runtime,
                pipeline,
                max_concurrent=args.max_concurrent,
                lease=args.lease,
                stop_when_idle=args.stop_when_idle is not None,
                idle_timeout=args.stop_when_idle or 0.0,
            )
            if scatters
            else None
        )
        resumer = (
            GateResumer(
                runtime,
                pipeline,
                stop_when_idle=args.stop_when_idle is not None,
                idle_timeout=args.stop_when_idle or 0.0,
            )
            if gated
            else None
        )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        if worker is not None:
                            worker.stop()
                        if resumer is not None:
                            resumer.stop()
                        return

                tg.start_soon(stop_on_signal)
                async with anyio.create_task_group() as parts:
                    if worker is not None:
                        parts.start_soon(worker.run)
                    if resumer is not None:
                        parts.start_soon(resumer.run)
                tg.cancel_scope.cancel()
    if worker is not None:
        stats = worker.stats
        sys.stdout.write(
            f"worker done: {stats.barriers} barrier(s), {stats.items} item(s) run, "
            f"{stats.recorded} result(s) stored\n"
        )
    if resumer is not None:
        sys.stdout.write(f"gates: {len(resumer.stats.resumed)} run(s) resumed\n")
    return 0
