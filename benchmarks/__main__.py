"""The benchmark runner: ``python -m benchmarks [--only NAME] [--quick] [--json PATH]``.

It discovers every ``benchmarks/bench_*.py`` module, runs each one's ``run(report)`` in its
own ``anyio.run``, and prints one table of flowstone's figures beside their baselines. A
module that cannot be imported (a missing extra, a server that is not there) is listed as
skipped; one that raises is listed as an error; the runner carries on either way. Targets
are reported in the notes, not asserted: the exit code is 0 unless the runner itself breaks.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import pkgutil
import platform
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from . import Row, higher_is_better

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Collector", "discover", "format_table", "main", "run_module", "write_json"]

_PACKAGE = "benchmarks"
_PREFIX = "bench_"


def discover() -> list[str]:
    """The names of the benchmark modules (``bench_core``, …), sorted."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name
        for info in pkgutil.iter_modules([here])
        if info.name.startswith(_PREFIX) and not info.ispkg
    )


class Collector:
    """The ``report`` callable handed to a module's ``run``: it keeps the module's rows.

    :param module: the module's name, recorded on each row
    :param quick: whether the suite runs in ``--quick`` mode
    """

    def __init__(self, module: str, *, quick: bool = False) -> None:
        self.module = module
        self.rows: list[Row] = []
        self._quick = quick

    @property
    def quick(self) -> bool:
        """Whether the suite runs in ``--quick`` mode (modules do fewer repetitions)."""
        return self._quick

    def __call__(self, name: str, value: float, baseline: float, unit: str, note: str = "") -> None:
        """Record one row: flowstone's ``value`` beside the ``baseline``, both in ``unit``."""
        self.rows.append(
            Row(self.module, str(name), float(value), float(baseline), str(unit), str(note))
        )
        print(f"  {name}: {value:.4g} {unit} (baseline {baseline:.4g})", file=sys.stderr)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    detail = f": {text[0]}" if text else ""
    line = f"{type(error).__name__}{detail}"
    return line if len(line) <= 110 else line[:107] + "..."


def _status_row(module: str, name: str, note: str, status: str) -> Row:
    return Row(module, name, math.nan, math.nan, "", note, status)


def run_module(name: str, *, quick: bool = False) -> list[Row]:
    """Import ``benchmarks.<name>`` and run its ``run(report)`` in a fresh ``anyio.run``.

    :return: the module's rows; a skipped row when it cannot be imported or has no ``run``;
        its rows so far plus an error row when it raises
    """
    try:
        module = importlib.import_module(f"{_PACKAGE}.{name}")
    except Exception as exc:
        return [_status_row(name, name, f"skipped: import failed: {_first_line(exc)}", "skipped")]
    run = getattr(module, "run", None)
    if not callable(run):
        return [_status_row(name, name, "skipped: no run(report) function", "skipped")]
    collector = Collector(name, quick=quick)
    try:
        anyio.run(run, collector)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        collector.rows.append(
            _status_row(name, f"{name} (stopped)", f"error: {_first_line(exc)}", "error")
        )
    return collector.rows


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table, with a legend for the ratio column."""
    header = ("workload", "flowstone", "baseline", "unit", "better", "ratio", "note")
    body: list[tuple[str, ...]] = []
    for row in rows:
        ratio = row.ratio
        body.append(
            (
                row.name,
                _number(row.value),
                _number(row.baseline),
                row.unit,
                row.better,
                f"{ratio:.2f}x" if math.isfinite(ratio) else "-",
                row.note,
            )
        )
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    right = {1, 2, 5}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return " | ".join(parts).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    out = [line(header), rule]
    module = None
    for row, cells in zip(rows, body, strict=True):
        if module is not None and row.module != module:
            out.append(rule)
        module = row.module
        out.append(line(cells))
    out.append("")
    out.append(
        "ratio = flowstone's cost relative to the baseline: value/baseline where lower is "
        "better, baseline/value where higher is better (units ending in /s); 1.00x is parity, "
        "above 1 is slower than the baseline."
    )
    return "\n".join(out)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_json(path: Path, rows: Sequence[Row], *, quick: bool, seconds: float) -> None:
    """Write the rows, with the interpreter and platform they were measured on, as JSON."""
    document: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "quick": quick,
        "seconds": round(seconds, 3),
        "rows": [
            {
                "module": row.module,
                "name": row.name,
                "value": _json_number(row.value),
                "baseline": _json_number(row.baseline),
                "unit": row.unit,
                "better": row.better or None,
                "higher_is_better": higher_is_better(row.unit) if row.unit else None,
                "ratio": _json_number(row.ratio),
                "note": row.note,
                "status": row.status,
            }
            for row in rows
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _selected(only: Sequence[str], available: Sequence[str]) -> list[str]:
    wanted: list[str] = []
    for item in only:
        for part in item.split(","):
            name = part.strip()
            if not name:
                continue
            module = name if name.startswith(_PREFIX) else _PREFIX + name
            module = module.removesuffix(".py")
            if module not in available:
                names = ", ".join(n.removeprefix(_PREFIX) for n in available) or "none"
                raise ValueError(f"no benchmark module {name!r} (available: {names})")
            if module not in wanted:
                wanted.append(module)
    return wanted or list(available)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite and print the table.

    :return: 0 (performance is reported, not asserted)
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=(
            "Run flowstone's benchmarks; each workload is printed beside a raw baseline "
            "measured in the same run."
        ),
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this module (core, scatter, postgres …); repeat or comma-separate",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: a fast smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # "µs" on a non-UTF-8 terminal
    try:
        modules = _selected(args.only, discover())
    except ValueError as exc:
        parser.error(str(exc))
    started = perf_counter()
    rows: list[Row] = []
    for name in modules:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr)
        began = perf_counter()
        module_rows = run_module(name, quick=args.quick)
        rows.extend(module_rows)
        status = {r.status for r in module_rows} - {"ok"}
        print(
            f"{name}: {perf_counter() - began:.1f} s{' (' + ', '.join(sorted(status)) + ')' if status else ''}",
            file=sys.stderr,
        )
    seconds = perf_counter() - started
    print()
    print(format_table(rows))
    print(
        f"\n{len(modules)} module(s) in {seconds:.1f} s; Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}"
        f"{'; quick mode: fewer repetitions' if args.quick else ''}"
    )
    if args.json is not None:
        write_json(args.json, rows, quick=args.quick, seconds=seconds)
        print(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
