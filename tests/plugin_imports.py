"""Helpers for the plugins' tests: importing a plugin without its dependency, and reading an
item reader to the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import flowstone
from flowstone.protocols import ItemReader

_SRC = str(Path(flowstone.__file__).resolve().parents[1])


def import_error_without(dependency: str, plugin: str) -> str:
    """``"<error type> <message>"`` of importing ``plugin`` in a fresh interpreter where
    ``dependency`` is not installed (``""`` when the import succeeds)."""
    code = (
        "import sys\n"
        f"sys.modules[{dependency!r}] = None  # as if it were not installed\n"
        "try:\n"
        f"    import {plugin}\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": _SRC, "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def read_all(
    reader: ItemReader[Any], limit: int, cursor: str | None = None
) -> tuple[list[Any], list[str]]:
    """Every item after ``cursor``, ``limit`` a page, and the cursor each page returned."""
    items: list[Any] = []
    cursors: list[str] = []
    while True:
        page = await reader.read_page(cursor, limit)
        items.extend(page.items)
        if page.cursor is None:
            return items, cursors
        cursors.append(page.cursor)
        cursor = page.cursor
