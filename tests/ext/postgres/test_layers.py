"""The PostgreSQL plugin is layered: the store's parts depend on the layer beneath them."""

from __future__ import annotations

import ast
from pathlib import Path

import flowstone.ext.postgres as postgres

PACKAGE = Path(postgres.__file__).resolve().parent

#: Parts that sit on the database layer (or the record storage) and never on the store.
BENEATH_THE_STORE = (
    "_database",
    "_records",
    "_buffer",
    "_io",
    "_tables",
    "_codec",
    "_gates",
    "_decisions",
    "_events",
    "_health",
    "_schedules",
    "_checks",
    "_partitions",
    "_migrations",
    "_queries",
)


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module)
    return names


def test_the_parts_beneath_the_store_never_import_it() -> None:
    for name in BENEATH_THE_STORE:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        assert "_store" not in _imported(tree), f"{name}.py imports _store"


def test_the_store_imports_its_parts_at_the_top() -> None:
    tree = ast.parse((PACKAGE / "_store.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inner = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            assert not inner, f"PostgresStore.{node.name} imports inside the function"
