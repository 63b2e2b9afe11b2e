"""``runtime.health()``: components, plugin checks, failures, time limits; ``flowstone health``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import pytest

import flowstone as fs
from flowstone.cli import main
from flowstone.protocols import HealthCheck, check_component


class BrokenStore(fs.MemoryStore):
    async def list_runs(self, *, limit: int = 100) -> list[fs.RunRecord]:
        raise ConnectionError("store unreachable")


class QueuePlugin:
    """A plugin with a health check of its own: two components."""

    def install(self, runtime: fs.Runtime) -> None:
        pass

    async def check_health(self) -> list[fs.ComponentHealth]:
        async def ping() -> str:
            return "3 messages waiting"

        async def broker() -> str:
            raise OSError("broker gone")

        return [
            await check_component("queue", ping),
            await check_component("queue:broker", broker),
        ]


class HangingSink:
    def emit(self, event: object) -> None:
        pass

    async def check_health(self) -> list[fs.ComponentHealth]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_default_runtime_is_up_component_by_component() -> None:
    async with fs.Runtime() as rt:
        report = await rt.health()
    assert [c.name for c in report.components] == ["store", "gate_store", "io_manager:memory"]
    assert all(c.status is fs.HealthStatus.UP for c in report.components)
    assert all(c.latency >= 0 for c in report.components)
    assert report.ok and report.status is fs.HealthStatus.UP
    assert report["store"].detail == "MemoryStore: reachable (0 run(s) listed)"
    assert "store" in report and "postgres" not in report
    assert report.to_dict()["status"] == "up"


async def test_plugins_contribute_checks_and_a_down_one_fails_the_report() -> None:
    assert isinstance(QueuePlugin(), HealthCheck)
    async with fs.Runtime(plugins=[QueuePlugin()]) as rt:
        report = await rt.health()
    assert report["queue"].status is fs.HealthStatus.UP
    assert report["queue"].detail == "3 messages waiting"
    broker = report["queue:broker"]
    assert broker.status is fs.HealthStatus.DOWN
    assert broker.detail == "OSError: broker gone"
    assert not report.ok and report.status is fs.HealthStatus.DOWN


async def test_a_failing_store_and_a_hanging_check_are_down() -> None:
    async with fs.Runtime(store=BrokenStore(), event_sinks=[HangingSink()]) as rt:
        report = await rt.health(timeout=0.05)
    assert report["store"].status is fs.HealthStatus.DOWN
    assert report["store"].detail == "ConnectionError: store unreachable"
    hanging = report["event_sink:HangingSink"]
    assert hanging.status is fs.HealthStatus.DOWN
    assert hanging.detail == "no answer in 0.05s"
    assert report["io_manager:memory"].status is fs.HealthStatus.UP


async def test_a_runtime_that_cannot_open_is_reported_down() -> None:
    class Failing:
        async def __aenter__(self) -> None:
            raise ConnectionRefusedError("no server")

        async def __aexit__(self, *exc: object) -> None:
            pass

    rt = fs.Runtime(resources={"db": Failing()})
    report = await rt.health()
    assert [c.name for c in report.components] == ["runtime"]
    assert report["runtime"].detail == "cannot open: ConnectionRefusedError: no server"
    assert not report.ok


RUNTIMES = """
import flowstone as fs


class BrokenStore(fs.MemoryStore):
    async def list_runs(self, *, limit=100):
        raise ConnectionError("store unreachable")


def healthy():
    return fs.Runtime()


def broken():
    return fs.Runtime(store=BrokenStore())
"""


@pytest.fixture
def runtimes(tmp_path: Path) -> str:
    path = tmp_path / "health_runtimes.py"
    path.write_text(textwrap.dedent(RUNTIMES))
    return str(path)


def test_the_health_command_exits_nonzero_when_something_is_down(
    runtimes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["health", f"{runtimes}:healthy"]) == 0
    out = capsys.readouterr().out
    assert "store  MemoryStore: reachable" in out and out.endswith("health: up\n")
    assert main(["health", f"{runtimes}:broken", "--json"]) == 1
    out = capsys.readouterr().out
    assert '"status": "down"' in out and "store unreachable" in out
    assert main(["health", f"{runtimes}:healthy", "--timeout", "0"]) == 2
