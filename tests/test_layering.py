"""The core never imports a plugin or an optional dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "src" / "flowstone" / "_core"
OPTIONAL = ("asyncpg", "aioboto3", "boto3", "pyarrow", "aiocron", "opentelemetry", "tqdm")


def test_core_sources_import_no_plugin() -> None:
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith("flowstone.ext"), f"{path.name} imports {name}"
                assert name.split(".")[0] not in OPTIONAL, f"{path.name} imports {name}"


SCRIPT = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, Block())
import anyio
import flowstone as fs

@fs.asset
async def a() -> int:
    return 20

@fs.asset
def b(a: int) -> int:
    return a + 1

result = fs.materialize_sync([a, b])
assert result["b"] == 21
assert not any(m.split(".")[0] in {blocked!r} for m in sys.modules), sorted(sys.modules)
print("ok")
"""


def test_pipeline_runs_with_optional_dependencies_blocked() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(blocked=set(OPTIONAL))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
