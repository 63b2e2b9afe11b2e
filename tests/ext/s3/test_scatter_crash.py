"""A durable scatter reading JSON Lines from S3 survives SIGKILL: 10,000 lines in 20
objects on the moto server, the process killed again and again mid-run and started again,
ends with each line's result stored exactly once, and the gathered value right.

The child runs ``scatter_child.py``; each item records its execution in the side table
``executions(key, line, pid)``, so re-executions are counted from outside. The scatter
reads the source lazily, page by page, checkpointing the reader's cursor (object key and
byte offset) with each page, so a kill lands while objects are half read and the resumed
run must continue from the cursor exactly: a line skipped or read twice would show as a
result whose ``i`` is not its position.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import flowstone as fs
from child_process import Child
from flowstone.testing import MotoServer

asyncpg = pytest.importorskip("asyncpg")

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

CHILD = Path(__file__).with_name("scatter_child.py")
OBJECTS, PER_OBJECT = 20, 500
LINES = OBJECTS * PER_OBJECT


@pytest.fixture
async def side(pg_dsn: str, pg_schema: str) -> AsyncIterator[Any]:
    """A connection, with the test's schema and its side table ``executions``."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        await conn.execute(
            f'CREATE TABLE "{pg_schema}".executions '
            "(key text NOT NULL, line bigint NOT NULL, pid integer NOT NULL)"
        )
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def lines_bucket(moto_server: MotoServer) -> str:
    """A bucket with 10,000 JSON Lines in 20 objects under ``lines/`` (keys in order)."""
    bucket = moto_server.create_bucket()
    client = moto_server.client()
    for o in range(OBJECTS):
        start = o * PER_OBJECT
        body = "".join(
            json.dumps({"i": i, "pad": "p" * (i % 17)}) + "\n"
            for i in range(start, start + PER_OBJECT)
        )
        client.put_object(Bucket=bucket, Key=f"lines/part-{o:03d}.jsonl", Body=body.encode())
    return bucket


async def finished(conn: Any, schema: str) -> int:
    """Items with a stored result so far."""
    try:
        value = await conn.fetchval(
            f"SELECT count(*) FROM \"{schema}\".scatter_items WHERE status = 'succeeded'"
        )
    except asyncpg.UndefinedTableError:
        return 0
    return int(value)


async def wait_until(check: Any, child: Child, what: str, timeout: float = 90.0) -> None:
    """Poll ``check()`` until true; fail early when the child died."""
    deadline = time.monotonic() + timeout
    while not await check():
        if not child.alive():
            pytest.fail(f"the child ended before {what}\n{child.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{child.output()}")
        await anyio.sleep(0.02)


async def test_a_killed_s3_scatter_resumes_to_one_stored_result_per_line(
    moto_server: MotoServer,
    lines_bucket: str,
    pg_dsn: str,
    pg_schema: str,
    side: Any,
    tmp_path: Path,
) -> None:
    src = str(Path(fs.__file__).resolve().parents[1])
    env = {**os.environ, **moto_server.environment}
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    concurrency, kills = 20, 4
    args = [
        "--dsn", pg_dsn, "--schema", pg_schema, "--bucket", lines_bucket,
        "--prefix", "lines/", "--lines", str(LINES), "--max-concurrent", str(concurrency),
    ]  # fmt: skip
    rng = random.Random(20250102)
    done = 0
    cursors: list[str] = []
    for _ in range(kills):
        child = Child(sys.executable, CHILD, args, env, tmp_path)
        target = done + rng.randint(900, 1800)

        async def progressed(target: int = target) -> bool:
            return await finished(side, pg_schema) >= target

        await wait_until(progressed, child, f"{target} finished items")
        child.kill()
        done = await finished(side, pg_schema)
        assert done < LINES, "the run ended before it could be killed; make it longer"
        cursor = await side.fetchval(f'SELECT cursor FROM "{pg_schema}".scatter_barriers')
        cursors.append(cursor)
    result = await Child(sys.executable, CHILD, args, env, tmp_path).finish(180)
    assert result == {"ok": True, "len": LINES}

    # The kills landed inside objects: the checkpointed cursors name a key and an offset.
    inside = [json.loads(c) for c in cursors if c and "offset" in json.loads(c)]
    assert inside and all(c["offset"] > 0 for c in inside), cursors
    # Each line has exactly one stored result, the right one for its position.
    row = await side.fetchrow(
        f"""SELECT count(*) AS n,
                count(*) FILTER (WHERE status = 'succeeded') AS ok,
                count(DISTINCT (result->>'i')::bigint) AS lines,
                count(*) FILTER (WHERE (result->>'i')::bigint = idx
                                   AND (result->>'sq')::bigint = idx * idx) AS right
            FROM "{pg_schema}".scatter_items"""
    )
    assert tuple(row) == (LINES, LINES, LINES, LINES)
    # Every line ran; only items in flight at a kill ran twice.
    executed = await side.fetchrow(
        f'SELECT count(*) AS n, count(DISTINCT line) AS lines FROM "{pg_schema}".executions'
    )
    assert executed["lines"] == LINES
    again = executed["n"] - LINES
    assert again <= 2 * concurrency * kills, f"{again} re-executions after {kills} kills"
