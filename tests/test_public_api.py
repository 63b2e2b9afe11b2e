"""The public surface: __all__ matches the exports, names show their public path."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import flowstone as fs
import flowstone.events
import flowstone.protocols

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_complete() -> None:
    for module in (fs, flowstone.protocols, flowstone.events):
        assert list(module.__all__) == sorted(module.__all__), module.__name__
        for name in module.__all__:
            getattr(module, name)  # flowstone's names are imported on first use
        public = {n for n in vars(module) if not n.startswith("_")}
        exported = set(module.__all__)
        missing = {n for n in public - exported if not isinstance(getattr(module, n), type(fs))}
        assert not (exported - public), f"{module.__name__}.__all__ names what it lacks"
        assert not missing, f"{module.__name__} exports {missing} without listing them"


def test_public_names_show_the_public_path() -> None:
    assert fs.Pipeline.__module__ == "flowstone"
    assert repr(fs.Retry).startswith("<class 'flowstone.Retry")


def test_every_public_name_has_a_docstring() -> None:
    for name in fs.__all__:
        obj = getattr(fs, name)
        assert getattr(obj, "__doc__", None), f"flowstone.{name} has no docstring"


def test_install_hints_name_real_extras() -> None:
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    hints = set()
    for path in (ROOT / "src" / "flowstone").rglob("*.py"):
        hints.update(
            re.findall(r"MissingExtraError\([^)]*?\"([a-z0-9_-]+)\"\s*,?\s*\)", path.read_text())
        )
        hints.update(re.findall(r"flowstone\[([a-z0-9_-]+)\]", path.read_text()))
    assert hints, "no install hints found"
    assert hints <= extras, f"install hints name extras that do not exist: {hints - extras}"


def test_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert fs.__version__ == version


def test_import_flowstone_loads_neither_asyncio_nor_the_execution_layer() -> None:
    code = (
        "import sys, flowstone as fs\n"
        "assert 'asyncio' not in sys.modules and 'flowstone._core.materializer' not in sys.modules\n"
        "@fs.asset\n"
        "def one() -> int:\n"
        "    return 1\n"
        "fs.Pipeline([one])\n"
        "assert 'asyncio' not in sys.modules, 'defining a pipeline imported asyncio'\n"
        "assert fs.materialize_sync([one]).ok\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_lazy_names_behave_like_attributes() -> None:
    assert fs.Pipeline is fs.__dict__["Pipeline"]
    assert set(fs.__all__) <= set(dir(fs))
    assert set(fs._WHERE) == set(fs.__all__)
    namespace: dict[str, object] = {}
    exec("from flowstone import *", namespace)
    assert namespace["Runtime"] is fs.Runtime
    with pytest.raises(AttributeError, match="has no attribute 'Pipelin'"):
        fs.Pipelin  # noqa: B018
