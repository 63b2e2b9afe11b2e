"""S3 benchmarks: ``S3ItemReader`` beside a raw aioboto3 loop, on a moto server, in one run.

moto's HTTP server runs in a child process (``python -m moto.server``) on a loopback port,
so the figures measure the client side alone and its allocations are not the reader's.

- **read JSON Lines** — ``S3ItemReader(format="jsonl")`` read page by page (1,000 lines a
  page, as a scatter reads it) over objects under a prefix, beside a raw loop: list the
  objects, ``get_object`` each, iterate its body's chunks, split lines, ``json.loads``
  each. Target: at least 0.8x the raw loop's lines/s. Best of several interleaved runs.
- **peak memory** — the growth of traced memory (``tracemalloc``) while the reader reads
  ~200 MB of JSON Lines (20 MB under ``--quick``), page by page, keeping nothing: the
  reader streams each object a chunk at a time. Target: under 64 MB. The baseline column
  is the size of the data read. The client is opened before tracing starts (botocore's
  service model, about 10 MB, is a fixed cost of any S3 client, not growth).

moto is a Python server: these figures compare clients on one machine, not S3's speed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from time import perf_counter
from typing import TYPE_CHECKING, Any

import aioboto3

from flowstone._testing_aws import FAKE_CREDENTIALS
from flowstone.ext.s3 import S3ItemReader

if TYPE_CHECKING:
    from . import Report

__all__ = ["run"]

MiB = 1024 * 1024
TARGET_RATIO = 0.8
MEMORY_LIMIT = 64 * MiB
_PAGE = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Server:
    """moto's server in a child process."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **FAKE_CREDENTIALS},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _object(start: int, lines: int) -> bytes:
    pad = "x" * 150
    return "".join(
        json.dumps({"i": i, "user": f"user-{i % 977}", "pad": pad}) + "\n"
        for i in range(start, start + lines)
    ).encode()


async def _upload(client: Any, bucket: str, prefix: str, objects: int, size: int) -> int:
    """Put ``objects`` JSON Lines objects of about ``size`` bytes; return the line count."""
    per_line = len(_object(0, 1))
    lines = max(1, size // per_line)
    for o in range(objects):
        body = _object(o * lines, lines)
        await client.put_object(Bucket=bucket, Key=f"{prefix}{o:04d}.jsonl", Body=body)
    return objects * lines


async def _read_reader(reader: S3ItemReader) -> int:
    count = 0
    cursor: str | None = None
    while True:
        page = await reader.read_page(cursor, _PAGE)
        count += len(page.items)
        if page.cursor is None:
            return count
        cursor = page.cursor


async def _read_raw(client: Any, bucket: str, prefix: str) -> int:
    decode = json.JSONDecoder().decode  # as fast as json goes: the reader decodes so too
    count = 0
    listed = await client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    for entry in listed.get("Contents", ()):
        response = await client.get_object(Bucket=bucket, Key=entry["Key"])
        rest = b""
        async for chunk in response["Body"].iter_chunks(256 * 1024):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                if line:
                    decode(line.decode())
                    count += 1
        if rest:
            decode(rest.decode())
            count += 1
    return count


async def run(report: Report) -> None:
    """Measure and report the rows."""
    saved = {name: os.environ.get(name) for name in FAKE_CREDENTIALS}
    os.environ.update(FAKE_CREDENTIALS)
    server = _Server()
    try:
        await _measure(report, server.url)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _measure(report: Report, url: str) -> None:
    quick = report.quick
    repeat = 2 if quick else 5
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=url, region_name="us-east-1") as client:
        await client.create_bucket(Bucket="bench")
        speed_objects, speed_size = (4, 4 * MiB) if quick else (8, 8 * MiB)
        lines = await _upload(client, "bench", "speed/", speed_objects, speed_size)
        memory_objects = 4 if quick else 20
        memory_lines = await _upload(
            client, "bench", "memory/", memory_objects, 5 * MiB if quick else 10 * MiB
        )
        ours = raw = float("inf")
        # Each side's client is opened once, outside the timings (a runtime opens the
        # reader's once); each round reads the whole prefix again.
        async with S3ItemReader("bench", "speed/", endpoint_url=url) as reader:
            for round_ in range(repeat):
                for side in (0, 1) if round_ % 2 == 0 else (1, 0):
                    began = perf_counter()
                    if side == 0:
                        got = await _read_reader(reader)
                        ours = min(ours, perf_counter() - began)
                    else:
                        got = await _read_raw(client, "bench", "speed/")
                        raw = min(raw, perf_counter() - began)
                    assert got == lines, (got, lines)

    mb = speed_objects * speed_size / MiB
    ratio = (lines / ours) / (lines / raw)
    report(
        f"read {lines:,} JSON lines ({mb:.0f} MB, {speed_objects} objects)",
        lines / ours,
        lines / raw,
        "lines/s",
        f"{ratio:.2f}x the raw loop (target >= {TARGET_RATIO}x)",
    )

    async with S3ItemReader("bench", "memory/", endpoint_url=url) as reader:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            got = await _read_reader(reader)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert got == memory_lines, (got, memory_lines)
    total = memory_objects * (5 * MiB if quick else 10 * MiB)
    growth = peak - before
    report(
        f"peak memory reading {total / MiB:.0f} MB of JSON lines",
        growth / MiB,
        total / MiB,
        "MB",
        f"traced growth; target < {MEMORY_LIMIT // MiB} MB (baseline: the data's size)",
    )
