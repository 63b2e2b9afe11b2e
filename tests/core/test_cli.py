"""The flowstone command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowstone.cli import main

PIPELINE = """
import flowstone as fs

@fs.asset
async def numbers() -> list[int]:
    return [1, 2, 3]

@fs.asset
def total(numbers: list[int]) -> int:
    return sum(numbers)

@fs.asset
async def broken(total: int) -> int:
    raise ValueError("nope")

pipeline = fs.Pipeline([numbers, total, broken], name="cli")
"""


@pytest.fixture
def target(tmp_path: Path) -> str:
    path = tmp_path / "cli_pipeline.py"
    path.write_text(PIPELINE)
    return f"{path}:pipeline"


def test_materialize_and_json(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["materialize", target, "--select", "total"]) == 0
    out = capsys.readouterr().out
    assert "succeeded  total" in out and "run " in out
    assert main(["materialize", target, "-s", "total", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "succeeded" and data["assets"]["total"]["status"] == "succeeded"


def test_failure_exits_nonzero(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["materialize", target]) == 1
    assert "ValueError: nope" in capsys.readouterr().out


def test_bad_target_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", f"{tmp_path}/missing.py:pipeline"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowstone: no such file") and err.count("\n") == 1


def test_unknown_selection_is_one_line(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["materialize", target, "-s", "totl"]) == 1
    assert "did you mean 'total'" in capsys.readouterr().err


def test_graph_formats(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", target, "--format", "mermaid"]) == 0
    assert capsys.readouterr().out.startswith("graph TD")


def test_help_and_demo_as_a_program() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowstone", "--help"], capture_output=True, text=True, check=True
    )
    assert "materialize" in out.stdout and "demo" in out.stdout
    demo = subprocess.run(
        [sys.executable, "-m", "flowstone", "demo"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "best market" in demo.stdout


BLOCKED_ASYNCPG = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "asyncpg":
            raise ImportError(f"blocked: {name}")
        return None

sys.meta_path.insert(0, Block())
from flowstone.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "migrate", "--dsn", "postgresql://nowhere/db"],
        ["db", "status"],
        ["worker", "--pipeline", "my_project.pipelines:pipeline", "--stop-when-idle", "1"],
    ],
    ids=["db-migrate", "db-status", "worker"],
)
def test_a_plugin_command_without_its_extra_names_the_install(argv: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", BLOCKED_ASYNCPG, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode != 0
    assert "invalid choice" not in out.stderr
    assert "pip install 'flowstone[postgres]'" in out.stderr
    assert out.stderr.startswith("flowstone: ") and out.stderr.count("\n") == 1


RUNTIME_FACTORY = """
import flowstone as fs

@fs.asset
async def greeting(ctx: fs.Context) -> str:
    return f"hello {ctx.resources.name}"

pipeline = fs.Pipeline([greeting], name="greet")

def runtime() -> fs.Runtime:
    return fs.Runtime(resources={"name": "world"}, pipelines=[pipeline])
"""


def test_materialize_with_a_runtime_factory_and_its_pipeline_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cli_factory.py"
    path.write_text(RUNTIME_FACTORY)
    assert main(["materialize", "greet", "--runtime", f"{path}:runtime", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["assets"]["greeting"]["status"] == "succeeded"
    assert main(["materialize", f"{path}:pipeline"]) == 1  # no runtime: no resource
    assert "no resource named 'name'" in capsys.readouterr().out


def test_resume_needs_a_runtime(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["resume", "some-run"])
    assert exited.value.code == 2
    assert "--runtime" in capsys.readouterr().err


def test_an_unknown_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli_factory.py"
    path.write_text(RUNTIME_FACTORY)
    assert main(["resume", "nope", "--runtime", f"{path}:runtime"]) == 1
    assert capsys.readouterr().err == "flowstone: no run with id 'nope' in the store\n"
    assert main(["runs", "--runtime", f"{path}:runtime"]) == 0
    assert capsys.readouterr().out == "no runs\n"
