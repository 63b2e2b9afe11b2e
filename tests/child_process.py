"""Child Python processes for the multi-process tests: start one, SIGKILL it, wait for it.

A child's output goes to files (a pipe could fill up and stall it); ``finish`` returns
the JSON object on its last line of output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest


def command_args(role: str, dsn: str, schema: str, **options: Any) -> list[str]:
    """``role --dsn … --schema … [--option value …]`` (``True`` gives a bare flag)."""
    args = [role, "--dsn", dsn, "--schema", schema]
    for name, value in options.items():
        if value is True:
            args.append(f"--{name.replace('_', '-')}")
        elif value is not None and value is not False:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


class Child:
    """One ``python script args…`` process (see :func:`command_args`)."""

    def __init__(
        self, python: str, script: Path, args: list[str], env: dict[str, str], folder: Path
    ) -> None:
        stamp = f"{args[0] if args else script.stem}-{time.monotonic_ns()}"
        self.out = folder / f"{stamp}.out"
        self.err = folder / f"{stamp}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [python, str(script), *args], env=env, stdout=out, stderr=err
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()[-4000:]}"

    async def finish(self, timeout: float) -> dict[str, Any]:
        try:
            code = await anyio.to_thread.run_sync(lambda: self.proc.wait(timeout))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"child did not finish in {timeout} s\n{self.output()}")
        assert code == 0, self.output()
        lines = self.out.read_text().strip().splitlines()
        assert lines, self.output()
        result: dict[str, Any] = json.loads(lines[-1])
        return result


async def wait_until(
    check: Any, child: Child, what: str, timeout: float = 60.0, interval: float = 0.02
) -> None:
    """Poll ``check()`` (state in another process, which cannot be awaited) until true;
    fail early when the child died."""
    deadline = time.monotonic() + timeout
    while not await check():
        if not child.alive():
            pytest.fail(f"the child ended before {what}\n{child.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{child.output()}")
        await anyio.sleep(interval)
