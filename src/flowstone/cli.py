"""The ``flowstone`` command: materialize and draw pipelines, run the demo.

Plugins add subcommands through the ``flowstone.cli`` entry-point group: each entry is a
function ``register(subparsers)`` that adds its parsers and sets ``func`` (a coroutine
function taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

__all__ = ["load_target", "main"]

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
        spec = importlib.util.spec_from_file_location(path.stem, path)
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


def _pipeline(target: str) -> Any:
    import flowstone as fs

    obj = load_target(target)
    if isinstance(obj, fs.Pipeline):
        return obj
    pipeline = fs.Pipeline(obj if isinstance(obj, list | tuple) else [obj])
    if not len(pipeline):
        raise CommandError(f"{target} defines no assets")
    return pipeline


async def _materialize(args: argparse.Namespace) -> int:
    import flowstone as fs

    pipeline = _pipeline(args.target)
    select = [s for group in args.select for s in group.split(",")] if args.select else None
    result = await fs.materialize(
        pipeline,
        select,
        partition=args.partition,
        force=args.force,
        run_id=args.run_id,
        raise_on_error=False,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status.value,
                    "assets": {
                        n: {"status": r.status.value, "attempts": r.attempts, "error": r.error}
                        for n, r in result.records.items()
                    },
                },
                indent=2,
            )
        )
    else:
        for name, record in result.records.items():
            note = f"  {record.error}" if record.error else ""
            reused = " (reused)" if record.reused else ""
            print(f"{record.status.value:<10} {name}{reused}{note}")
        print(f"run {result.run_id} {result.status.value} in {result.duration:.3f}s")
    return 0 if result.ok else 1


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
        "target", help="module:attr or path/to/file.py:attr (a Pipeline, assets or module)"
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
    mat.add_argument("--run-id", help="run id; an existing one resumes that run")
    mat.add_argument("--json", action="store_true", help="print the result as JSON")
    mat.set_defaults(func=_materialize)

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

    from importlib.metadata import entry_points

    for ep in entry_points(group="flowstone.cli"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a plugin whose extra is missing: say so when used
            name = ep.name
            reason = str(exc)
            stub = sub.add_parser(name, help=f"(unavailable: {reason})")
            stub.set_defaults(func=_unavailable(reason))
    return parser


def _unavailable(reason: str) -> Handler:
    async def handler(args: argparse.Namespace) -> int:
        raise CommandError(reason)

    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
