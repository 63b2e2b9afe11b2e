"""Events on S3: fan out over JSON Lines objects, store a daily summary back on S3.

Run it against any S3 endpoint: AWS, MinIO, or a moto server (``moto_server -p 5000``)::

    python examples/s3_events.py --endpoint-url http://127.0.0.1:5000

It creates the bucket (``--bucket``, default ``flowstone-example``), writes three objects
of JSON Lines events under ``events/2025-01-02/``, then materializes two assets:

- ``scored``, a scatter over every line of those objects (``S3ItemReader``, streamed a
  chunk at a time), scoring each event;
- ``summary``, the day's totals, stored as JSON by ``S3IOManager`` under
  ``flowstone/summary/partition=2025-01-02``.

Credentials come from the usual AWS environment variables (any will do for moto).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import aioboto3
import anyio

import flowstone as fs
from flowstone.ext.s3 import S3IOManager, S3ItemReader
from flowstone.ext.scatter import scatter

DAY = "2025-01-02"
parser = argparse.ArgumentParser()
parser.add_argument("--endpoint-url", default=None)
parser.add_argument("--bucket", default="flowstone-example")
ARGS = parser.parse_args()

events = S3ItemReader(ARGS.bucket, f"events/{DAY}/", format="jsonl", endpoint_url=ARGS.endpoint_url)


@fs.asset
@scatter(reader=events, max_concurrent=20)
async def scored(ctx: fs.Context, item: dict[str, Any]) -> dict[str, Any]:
    return {"user": item["user"], "points": item["clicks"] * 10 + (5 if item["bought"] else 0)}


@fs.asset(io_manager="s3", partitions=fs.StaticPartitions([DAY]))
async def summary(ctx: fs.Context, scored: list[dict[str, Any]]) -> dict[str, Any]:
    by_user: dict[str, int] = {}
    for row in scored:
        by_user[row["user"]] = by_user.get(row["user"], 0) + row["points"]
    return {"day": ctx.partition, "events": len(scored), "points": by_user}


async def upload_events() -> None:
    session = aioboto3.Session()
    async with session.client("s3", endpoint_url=ARGS.endpoint_url) as client:
        try:
            await client.create_bucket(Bucket=ARGS.bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        for part in range(3):
            lines = [
                {"user": f"u{(part + i) % 4}", "clicks": i % 5, "bought": i % 7 == 0}
                for i in range(100)
            ]
            body = "".join(json.dumps(line) + "\n" for line in lines).encode()
            await client.put_object(
                Bucket=ARGS.bucket, Key=f"events/{DAY}/part-{part}.jsonl", Body=body
            )


async def main() -> None:
    await upload_events()
    manager = S3IOManager(ARGS.bucket, "flowstone", endpoint_url=ARGS.endpoint_url)
    async with fs.Runtime(io_managers={"s3": manager}, plugins=[events]) as rt:
        result = await rt.materialize([scored, summary], partition=DAY)
        stored = await fs.load(summary, DAY, runtime=rt)
    print(f"run {result.run_id}: {result.status.value}")
    print(f"scored {stored['events']} events; points by user: {stored['points']}")
    print(f"stored at {result.records['summary'].metadata['s3']['uri']}")


if __name__ == "__main__":
    anyio.run(main)
