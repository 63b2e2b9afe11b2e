"""``flowstone schedule TARGET``: ``--list`` and a foreground scheduler stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import flowstone
from flowstone.cli import main

SCHEDULES = """
from datetime import timedelta

import flowstone as fs
from flowstone.ext.schedule import Schedule, sensor

@fs.asset
async def report() -> int:
    return 1

nightly = Schedule([report], cron="30 2 * * *", timezone="Europe/Paris", name="nightly")
often = Schedule([report], cron="*/5 * * * *", name="often")

@sensor(interval=30, pipeline=[report])
async def files(cursor):
    return None

all = [nightly, often, files]
"""


@pytest.fixture
def target(tmp_path: Path) -> str:
    path = tmp_path / "cli_schedules.py"
    path.write_text(SCHEDULES)
    return f"{path}:all"


def test_list_prints_the_next_ticks_of_each_schedule(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", target, "--list", "--count", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "nightly: cron '30 2 * * *' in Europe/Paris"
    assert all("T02:30:00+0" in line for line in out[1:4])
    assert out[4] == "often: cron '*/5 * * * *' in UTC"
    assert out[-1] == "files: sensor polled every 30s"


def test_a_target_that_names_no_schedule_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nothing.py"
    path.write_text("value = 3\n")
    assert main(["schedule", f"{path}:value", "--list"]) == 2
    assert "must name a Schedule, a Sensor or a list of them" in capsys.readouterr().err


async def test_sigterm_stops_the_foreground_scheduler_cleanly(target: str, tmp_path: Path) -> None:
    src = str(Path(flowstone.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowstone", "schedule", target],
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        with anyio.fail_after(60):  # the process starting (its output cannot be awaited)
            while "scheduler started" not in out.read_text():
                assert proc.poll() is None, err.read_text()
                await anyio.sleep(0.05)
        assert "nightly, often, files" in out.read_text()
        proc.send_signal(signal.SIGTERM)
        code = await anyio.to_thread.run_sync(lambda: proc.wait(30))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err.read_text()
    assert "scheduler stopped:" in out.read_text(), err.read_text()
