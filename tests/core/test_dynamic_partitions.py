"""DynamicPartitions: keys added and removed at run time, kept by the runtime."""

from __future__ import annotations

import pytest

import flowstone as fs
from flowstone.protocols import DynamicPartitionStore

CUSTOMERS = fs.DynamicPartitions("customers")


@fs.asset(partitions=CUSTOMERS)
async def invoices(ctx: fs.Context) -> str:
    return f"invoices of {ctx.partition}"


async def test_added_keys_are_partitions_of_the_next_run() -> None:
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([invoices])
    with pytest.raises(fs.PartitionError, match=r"runtime.partitions.add\('customers'"):
        await runtime.materialize(pipeline, partition="acme")
    assert await runtime.partitions.add("customers", ["acme", "globex", "acme"]) == [
        "acme",
        "globex",
    ]
    assert await runtime.partitions.add("customers", "acme") == []
    result = await runtime.materialize(pipeline, partition="acme")
    assert result["invoices"] == "invoices of acme"
    assert await runtime.partitions.keys("customers") == ["acme", "globex"]


async def test_removed_keys_are_no_partitions_but_their_values_stay() -> None:
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([invoices])
    await runtime.partitions.add("customers", ["acme", "globex"])
    await runtime.materialize(pipeline, partition="globex")
    assert await runtime.partitions.remove("customers", ["globex", "initech"]) == ["globex"]
    with pytest.raises(fs.PartitionError, match="not one of the 1 keys"):
        await runtime.materialize(pipeline, partition="globex")
    assert await runtime.store.latest("invoices", "globex") is not None
    await runtime.partitions.add("customers", "globex")  # back: its value is current again
    states = await runtime.status(pipeline, partition="globex")
    assert states["invoices"].current


async def test_backfill_and_all_partitions_read_the_current_keys() -> None:
    @fs.asset(deps_partitions={"invoices": fs.AllPartitions()})
    async def everyone(invoices: dict[str, str]) -> list[str]:
        return list(invoices)

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([invoices, everyone])
    await runtime.partitions.add("customers", ["a", "b", "c"])
    result = await fs.backfill(pipeline, "invoices", partitions=CUSTOMERS, runtime=runtime)
    assert result.succeeded == 3
    await runtime.partitions.add("customers", "d")
    total = await runtime.materialize(pipeline, "everyone")
    assert total["everyone"] == ["a", "b", "c", "d"]


async def test_dynamic_dimension_of_multi_partitions() -> None:
    multi = fs.MultiPartitions(
        {"date": fs.DailyPartitions(start="2025-01-01", end="2025-01-03"), "customer": CUSTOMERS}
    )

    @fs.asset(partitions=multi)
    async def usage(ctx: fs.Context) -> str:
        assert ctx.partition is not None
        return ctx.partition

    runtime = fs.Runtime()
    await runtime.partitions.add("customers", ["a|b"])
    result = await runtime.materialize([usage], partition="2025-01-02|a\\|b")
    assert multi.decode(result["usage"]) == {"date": "2025-01-02", "customer": "a|b"}


class CountingStore(fs.MemoryStore):
    """A record store that keeps dynamic partitions too (the runtime then uses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: dict[str, list[str]] = {}

    async def add_partitions(self, name: str, keys: list[str]) -> list[str]:
        known = self.keys.setdefault(name, [])
        added = [k for k in keys if k not in known]
        known.extend(added)
        return added

    async def remove_partitions(self, name: str, keys: list[str]) -> list[str]:
        known = self.keys.get(name, [])
        removed = [k for k in keys if k in known]
        self.keys[name] = [k for k in known if k not in removed]
        return removed

    async def dynamic_partition_keys(self, name: str) -> list[str]:
        return list(self.keys.get(name, []))


async def test_a_store_that_keeps_dynamic_partitions_is_used() -> None:
    store = CountingStore()
    assert isinstance(store, DynamicPartitionStore)
    runtime = fs.Runtime(store=store)
    await runtime.partitions.add("customers", ["x"])
    assert store.keys == {"customers": ["x"]}
    assert (await runtime.materialize([invoices], partition="x"))["invoices"] == "invoices of x"


def test_bad_names_and_keys() -> None:
    with pytest.raises(fs.PartitionError):
        fs.DynamicPartitions("")
    assert fs.DynamicPartitions("a") == fs.DynamicPartitions("a")
    assert repr(CUSTOMERS) == "DynamicPartitions('customers')"


async def test_bad_keys_are_rejected() -> None:
    runtime = fs.Runtime()
    with pytest.raises(fs.PartitionError, match="non-empty str"):
        await runtime.partitions.add("customers", [""])


def test_a_dynamic_partitioning_without_keys_yet_is_still_shown() -> None:
    info = fs.Pipeline([invoices]).info("invoices")
    assert info["partitions"] == "DynamicPartitions('customers')"
