"""The ``flowstone`` command: materialize, resume and draw pipelines, list runs, check a
runtime's health, run the demo.

Plugins add subcommands through the ``flowstone.cli`` entry-point group: each entry is named
after the command it adds and points at a function ``register(subparsers)`` that adds its
parser and sets ``func`` (a coroutine function taking the parsed ``argparse.Namespace`` and
returning an exit code). The names are known without importing the plugin, so a command
whose plugin lacks its extra still answers, with the install hint.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ._core.result import MaterializeResult
    from ._core.runtime import Runtime

__all__ = ["load_runtime", "load_target", "main"]

Handler = Callable[[argparse.Namespace], Awaitable[int]]


class CommandError(Exception):
    """A one-line reason the command failed."""


def load_target(target: str) -> Any:
    """Import ``module:attr`` or ``path/to/file.py:attr`` (``:attr`` optional).

    Without ``:attr`` the module itself is returned (its assets make the pipeline).

    :raises CommandError: the module or attribute cannot be found
    """
    location, _, attr = target.partition(":")
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location)
        if not path.exists():
            raise CommandError(f"no such file: {location}")
        loaded = sys.modules.get(path.stem)
        if loaded is not None and Path(getattr(loaded, "__file__", "") or "") == path.resolve():
            module = loaded  # one file named twice (--runtime and the pipeline): one module
        else:
            spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
            if spec is None or spec.loader is None:
                raise CommandError(f"cannot import {location}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            sys.path.insert(0, str(path.parent.resolve()))
            spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as exc:
            raise CommandError(f"cannot import module {location!r}: {exc}") from exc
    if not attr:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CommandError(f"{location} has no attribute {attr!r}") from None


def _pipeline(target: str, runtime: Runtime | None = None) -> Any:
    """The pipeline ``target`` names: ``module:attr``, a file, or the name of a pipeline
    ``runtime`` knows (registered with it)."""
    import flowstone as fs

    if runtime is not None and ":" not in target:
        try:
            return runtime.pipeline(target)
        except LookupError:
            pass
    obj = load_target(target)
    if isinstance(obj, fs.Pipeline):
        return obj
    pipeline = fs.Pipeline(obj if isinstance(obj, list | tuple) else [obj])
    if not len(pipeline):
        raise CommandError(f"{target} defines no assets")
    return pipeline


async def load_runtime(target: str) -> Runtime:
    """The runtime a ``--runtime module:attr`` names: a ``Runtime``, or a callable (sync or
    async) returning one, set up with its store, resources and pipelines.

    :raises CommandError: the target cannot be loaded or gives no ``Runtime``
    """
    import flowstone as fs

    obj = load_target(target)
    if not isinstance(obj, fs.Runtime) and callable(obj):
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
    if not isinstance(obj, fs.Runtime):
        raise CommandError(
            f"--runtime {target} gives {type(obj).__name__}, not a flowstone Runtime "
            "(name a Runtime, or a function returning one)"
        )
    return obj


@asynccontextmanager
async def _opened_runtime(target: str | None) -> AsyncIterator[Runtime]:
    """The ``--runtime`` runtime, opened for the command and closed after it (default: a
    new in-memory runtime)."""
    import flowstone as fs

    runtime = await load_runtime(target) if target else fs.Runtime()
    async with runtime:
        yield runtime


def _add_runtime_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--runtime",
        required=required,
        metavar="MODULE:ATTR",
        help=(
            "a flowstone Runtime, or a function (sync or async) returning one, with its "
            "store, resources and pipelines" + ("" if required else " (default: in memory)")
        ),
    )


def _print_result(result: MaterializeResult, as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status.value,
                    "resumed": result.resumed,
                    "assets": {
                        n: {
                            "status": r.status.value,
                            "attempts": r.attempts,
                            "reused": r.reused,
                            "error": r.error,
                        }
                        for n, r in result.records.items()
                    },
                },
                indent=2,
            )
        )
        return
    for name, record in result.records.items():
        note = f"  {record.error}" if record.error else ""
        reused = " (reused)" if record.reused else ""
        print(f"{record.status.value:<10} {name}{reused}{note}")
    print(f"run {result.run_id} {result.status.value} in {result.duration:.3f}s")


async def _materialize(args: argparse.Namespace) -> int:
    select = [s for group in args.select for s in group.split(",")] if args.select else None
    async with _opened_runtime(args.runtime) as runtime:
        pipeline = _pipeline(args.target, runtime)
        result = await runtime.materialize(
            pipeline,
            select,
            partition=args.partition,
            force=args.force,
            run_id=args.run_id,
            raise_on_error=False,
        )
    _print_result(result, args.json)
    return 0 if result.ok else 1


async def _resume(args: argparse.Namespace) -> int:
    async with _opened_runtime(args.runtime) as runtime:
        pipeline = _pipeline(args.pipeline, runtime) if args.pipeline else None
        result = await runtime.resume(args.run_id, pipeline, raise_on_error=False)
    _print_result(result, args.json)
    return 0 if result.ok else 1


async def _runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError(f"--limit must be at least 1, got {args.limit}")
    async with _opened_runtime(args.runtime) as runtime:
        runs = await runtime.store.list_runs(limit=args.limit)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "run_id": run.run_id,
                        "status": run.status.value,
                        "pipeline": run.pipeline,
                        "selection": list(run.selection),
                        "partition": run.partition,
                        "started_at": run.started_at.isoformat(),
                        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
                    }
                    for run in runs
                ],
                indent=2,
            )
        )
        return 0
    for run in runs:
        took = f"{(run.ended_at - run.started_at).total_seconds():.3f}s" if run.ended_at else "-"
        where = f" [{run.partition}]" if run.partition is not None else ""
        print(
            f"{run.run_id}  {run.status.value:<9}  {run.started_at:%Y-%m-%d %H:%M:%S}  "
            f"{took:>9}  {run.pipeline or '-'}{where}"
        )
    if not runs:
        print("no runs")
    return 0


async def _health(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError(f"--timeout must be positive, got {args.timeout}")
    runtime = await load_runtime(args.target)
    try:
        report = await runtime.health(timeout=args.timeout)
    finally:
        await runtime.aclose()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for component in report.components:
            print(
                f"{component.status.value:<9} {component.latency * 1000:>9.1f} ms  "
                f"{component.name}  {component.detail}"
            )
        print(f"health: {report.status.value}")
    return 0 if report.ok else 1


async def _graph(args: argparse.Namespace) -> int:
    print(_pipeline(args.target).graph(args.format))
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    result = await run_demo(args.partition)
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with plugin subcommands added."""
    parser = argparse.ArgumentParser(
        prog="flowstone",
        description="Asset-first data orchestration for asyncio.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mat = sub.add_parser(
        "materialize",
        help="materialize a pipeline's assets",
        description="Materialize the selected assets of a pipeline (with their upstream).",
    )
    mat.add_argument(
        "target",
        help=(
            "module:attr or path/to/file.py:attr (a Pipeline, assets or module), or the "
            "name of a pipeline the --runtime registers"
        ),
    )
    mat.add_argument(
        "-s",
        "--select",
        action="append",
        metavar="NAMES",
        help="assets to materialize (comma-separated, repeatable)",
    )
    mat.add_argument("-p", "--partition", help="partition key for partitioned assets")
    mat.add_argument("--force", action="store_true", help="recompute current upstream values too")
    mat.add_argument(
        "--run-id", help="run id; an existing one in the runtime's store resumes that run"
    )
    mat.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_runtime_option(mat)
    mat.set_defaults(func=_materialize)

    resume = sub.add_parser(
        "resume",
        help="continue a run where it stopped",
        description=(
            "Continue a stored run where it stopped: what succeeded is kept, the rest runs. "
            "The run's pipeline is found by name among the runtime's pipelines, or given."
        ),
    )
    resume.add_argument("run_id", help="the run to resume")
    _add_runtime_option(resume, required=True)
    resume.add_argument(
        "--pipeline",
        metavar="MODULE:ATTR",
        help="the run's pipeline (module:attr or file), when the runtime does not register it",
    )
    resume.add_argument("--json", action="store_true", help="print the result as JSON")
    resume.set_defaults(func=_resume)

    runs = sub.add_parser(
        "runs", help="list recent runs", description="List the store's runs, newest first."
    )
    _add_runtime_option(runs, required=True)
    runs.add_argument("-n", "--limit", type=int, default=20, help="how many (default: 20)")
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")
    runs.set_defaults(func=_runs)

    health = sub.add_parser(
        "health",
        help="check a runtime's store, IO managers and plugins",
        description=(
            "Check every part of a runtime (store, gate store, IO managers, plugins) and "
            "print each one's status and latency. Exits 1 when any part is down (usable as "
            "a liveness probe)."
        ),
    )
    health.add_argument(
        "target", metavar="MODULE:ATTR", help="a flowstone Runtime, or a function returning one"
    )
    health.add_argument(
        "--timeout", type=float, default=5.0, help="seconds each check may take (default: 5)"
    )
    health.add_argument("--json", action="store_true", help="print the report as JSON")
    health.set_defaults(func=_health)

    graph = sub.add_parser(
        "graph", help="print a pipeline's graph", description="Print a pipeline's graph."
    )
    graph.add_argument("target", help="module:attr or path/to/file.py:attr")
    graph.add_argument("-f", "--format", choices=["text", "mermaid", "dot"], default="text")
    graph.set_defaults(func=_graph)

    demo = sub.add_parser(
        "demo", help="run the built-in example pipeline", description="Run the demo pipeline."
    )
    demo.add_argument("-p", "--partition", default="2025-01-02", help="the day to compute")
    demo.set_defaults(func=_demo)

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """Add each ``flowstone.cli`` entry point's command, named after the entry point.

    A plugin whose extra is missing still gets its command, which prints the install hint
    (the plugin's ``MissingExtraError``) and exits non-zero, whatever arguments it is given.
    """
    from importlib.metadata import entry_points

    for ep in entry_points(group="flowstone.cli"):
        if ep.name in sub.choices:  # the core's own command, or added by an earlier plugin
            continue
        try:
            register = ep.load()
        except ImportError as exc:
            stub = sub.add_parser(ep.name, help=f"(unavailable: {exc})", add_help=False)
            stub.set_defaults(func=_unavailable(ep.name, exc), takes_any_arguments=True)
            continue
        register(sub)


def _unavailable(command: str, error: ImportError) -> Handler:
    async def handler(args: argparse.Namespace) -> int:
        from ._core.errors import FlowstoneError

        if isinstance(error, FlowstoneError):  # a MissingExtraError: the install hint
            raise error
        raise CommandError(f"the {command!r} command is unavailable: {error}")

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Handler = args.func
    try:
        return anyio.run(handler, args)
    except KeyboardInterrupt:
        print("flowstone: interrupted", file=sys.stderr)
        return 130
    except CommandError as exc:
        print(f"flowstone: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from ._core.errors import FlowstoneError

        if isinstance(exc, FlowstoneError):
            print(f"flowstone: {exc}", file=sys.stderr)
            return 1
        raise
