"""A process running a durable scatter over JSON Lines on S3, for the crash test.

``python scatter_child.py --dsn … --schema … --bucket … --prefix … [options]``

The pipeline is one asset, ``work``: a durable (PostgreSQL) scatter whose items come from
``S3ItemReader(format="jsonl")`` over every object under the prefix. Each item sleeps a
little, records its execution in the side table ``executions(key, line, pid)`` and returns
``{"i": line["i"], "sq": line["i"] ** 2}``. The process materializes it with ``--run-id``
(again: a resume) and prints one JSON line: ``{"ok": <the gathered value is right>,
"len": …}``. The S3 endpoint and credentials come from the environment
(``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import anyio
import asyncpg

import flowstone as fs
from flowstone.ext.postgres import PostgresStore, RetryPolicy
from flowstone.ext.s3 import S3ItemReader
from flowstone.ext.scatter import scatter

parser = argparse.ArgumentParser()
parser.add_argument("--dsn", required=True)
parser.add_argument("--schema", required=True)
parser.add_argument("--bucket", required=True)
parser.add_argument("--prefix", required=True)
parser.add_argument("--lines", type=int, required=True)
parser.add_argument("--run-id", default="s3-crash")
parser.add_argument("--max-concurrent", type=int, default=20)
parser.add_argument("--page-size", type=int, default=50)
parser.add_argument("--sleep", type=float, default=0.002)
ARGS = parser.parse_args()

SIDE = f'INSERT INTO "{ARGS.schema}".executions (key, line, pid) VALUES ($1, $2, $3)'
READER = S3ItemReader(ARGS.bucket, ARGS.prefix, format="jsonl")


@fs.asset
@scatter(
    reader=READER,
    max_concurrent=ARGS.max_concurrent,
    page_size=ARGS.page_size,
    retry=fs.Retry(attempts=50, backoff=0.05, max_delay=0.5),
)
async def work(ctx: fs.Context, item: dict[str, Any]) -> dict[str, int]:
    await anyio.sleep(ARGS.sleep)
    await ctx.resources.side.execute(SIDE, ctx.scatter_key, item["i"], os.getpid())
    return {"i": item["i"], "sq": item["i"] * item["i"]}


async def main() -> None:
    side = await asyncpg.create_pool(ARGS.dsn, min_size=1, max_size=ARGS.max_concurrent)
    retry = RetryPolicy(timeout=60, initial_delay=0.05, max_delay=0.5)
    store = PostgresStore(ARGS.dsn, schema=ARGS.schema, max_size=6, retry=retry)
    try:
        async with fs.Runtime(store=store, resources={"side": side}, plugins=[READER]) as rt:
            result = await rt.materialize([work], run_id=ARGS.run_id)
        value: Any = result["work"]
        expected = [{"i": i, "sq": i * i} for i in range(ARGS.lines)]
        sys.stdout.write(json.dumps({"ok": value == expected, "len": len(value)}) + "\n")
    finally:
        await side.close()


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
