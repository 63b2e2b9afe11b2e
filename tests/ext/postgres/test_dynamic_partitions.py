"""Dynamic partitions kept durably by PostgresStore, on the real server."""

from __future__ import annotations

import anyio

import flowstone as fs
from flowstone.ext.postgres import PostgresStore
from flowstone.protocols import DynamicPartitionStore

CUSTOMERS = fs.DynamicPartitions("customers")


@fs.asset(partitions=CUSTOMERS)
async def invoices(ctx: fs.Context) -> str:
    return f"invoices of {ctx.partition}"


async def test_keys_are_durable_and_shared_by_every_store_on_the_schema(
    pg_dsn: str, pg_schema: str, pg_runtime: fs.Runtime
) -> None:
    assert isinstance(pg_runtime.store, DynamicPartitionStore)
    assert await pg_runtime.partitions.add("customers", ["acme", "globex", "acme"]) == [
        "acme",
        "globex",
    ]
    assert await pg_runtime.partitions.add("customers", ["initech", "acme"]) == ["initech"]
    async with PostgresStore(pg_dsn, schema=pg_schema) as other:
        assert await other.dynamic_partition_keys("customers") == ["acme", "globex", "initech"]
        assert await other.remove_partitions("customers", ["globex", "nope"]) == ["globex"]
        assert await other.dynamic_partition_keys("elsewhere") == []
    assert await pg_runtime.partitions.keys("customers") == ["acme", "initech"]
    result = await pg_runtime.materialize([invoices], partition="initech")
    assert result["invoices"] == "invoices of initech"


async def test_concurrent_adds_of_one_key_add_it_once(pg_runtime: fs.Runtime) -> None:
    added: list[list[str]] = []

    async def add() -> None:
        added.append(await pg_runtime.partitions.add("customers", ["same", "other"]))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(add)
    assert sorted(k for each in added for k in each) == ["other", "same"]
    assert await pg_runtime.partitions.keys("customers") == ["same", "other"]
