"""MultiPartitions: key encoding, subsets, dimension-wise mappings and backfills."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs

DAYS = fs.DailyPartitions(start="2025-01-01", end="2025-02-01")
REGIONS = fs.StaticPartitions(["eu", "us"])
MULTI = fs.MultiPartitions({"date": DAYS, "region": REGIONS})

static_keys = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True)


@given(st.lists(static_keys, min_size=1, max_size=3))
def test_key_encoding_round_trips_for_any_static_keys(dimensions: list[list[str]]) -> None:
    multi = fs.MultiPartitions(
        {f"d{i}": fs.StaticPartitions(keys) for i, keys in enumerate(dimensions)}
    )
    keys = multi.keys()
    assert len(set(keys)) == len(keys)  # distinct combinations, distinct keys
    for key in keys:
        parts = multi.decode(key)
        assert multi.encode(parts) == key
        assert multi.validate(key) == key
        assert key in multi
        assert all(parts[f"d{i}"] in dimensions[i] for i in range(len(dimensions)))


@given(st.lists(st.sampled_from(["a", "|", "\\", "b|", "\\|"]), min_size=2, max_size=4))
def test_the_separator_and_the_escape_inside_keys_round_trip(parts: list[str]) -> None:
    multi = fs.MultiPartitions(
        {f"d{i}": fs.StaticPartitions([part]) for i, part in enumerate(parts)}
    )
    (key,) = multi.keys()
    assert multi.decode(key) == {f"d{i}": part for i, part in enumerate(parts)}


def test_encoding_is_the_documented_one() -> None:
    assert MULTI.keys()[:3] == ("2025-01-01|eu", "2025-01-01|us", "2025-01-02|eu")
    odd = fs.MultiPartitions({"a": fs.StaticPartitions(["x|y"]), "b": fs.StaticPartitions(["\\"])})
    assert odd.keys() == ("x\\|y|\\\\",)


def test_validate_is_canonical_and_names_the_dimension() -> None:
    assert MULTI.validate("2025-1-2|eu") == "2025-01-02|eu"
    with pytest.raises(fs.PartitionError, match="dimension 'region'"):
        MULTI.validate("2025-01-02|mars", asset="sales")
    with pytest.raises(fs.PartitionError, match="not a key of 2 dimensions"):
        MULTI.validate("2025-01-02")
    with pytest.raises(fs.PartitionError, match="not a key of 2 dimensions"):
        MULTI.validate("2025-01-02\\eu")  # an escape of neither \\ nor |
    assert "2025-1-2|eu" not in MULTI


def test_keys_of_a_subset() -> None:
    keys = MULTI.keys(date=DAYS.range("2025-01-02", "2025-01-04"), region=["eu"])
    assert keys == ("2025-01-02|eu", "2025-01-03|eu", "2025-01-04|eu")
    assert MULTI.keys(region="us")[0] == "2025-01-01|us"
    with pytest.raises(fs.PartitionError, match="unknown dimensions"):
        MULTI.keys(country=["fr"])
    with pytest.raises(fs.PartitionError):
        MULTI.keys(region=["mars"])


def test_malformed_definitions() -> None:
    with pytest.raises(fs.PartitionError):
        fs.MultiPartitions({})
    with pytest.raises(fs.PartitionError, match="dimension 'x'"):
        fs.MultiPartitions({"x": ["a"]})  # type: ignore[dict-item]


@fs.asset(partitions=MULTI)
async def sales(ctx: fs.Context) -> str:
    assert ctx.partition is not None
    return ctx.partition


async def test_identity_backfill_over_a_subset() -> None:
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([sales])
    subset = MULTI.keys(date=DAYS.range("2025-01-02", "2025-01-04"), region=["eu"])
    result = await fs.backfill(pipeline, partitions=subset, runtime=runtime)
    assert result.succeeded == 3
    assert await runtime.load("sales", "2025-01-03|eu") == "2025-01-03|eu"
    assert not await runtime.exists("sales", "2025-01-03|us")


async def test_dimension_wise_mappings() -> None:
    @fs.asset(partitions=MULTI, deps_partitions={"sales": fs.MultiMapping({"date": fs.LastN(3)})})
    async def rolling(sales: dict[str, str]) -> list[str]:
        return list(sales)

    @fs.asset(partitions=DAYS)
    async def rates(ctx: fs.Context) -> str:
        return f"rate-{ctx.partition}"

    @fs.asset(
        partitions=MULTI,
        deps_partitions={"rates": fs.MultiMapping({"date": fs.IdentityMapping()})},
    )
    async def converted(rates: str) -> str:
        return rates

    @fs.asset(
        partitions=DAYS,
        deps_partitions={
            "sales": fs.MultiMapping({"date": fs.IdentityMapping(), "region": fs.AllPartitions()})
        },
    )
    async def daily_total(sales: dict[str, str]) -> list[str]:
        return list(sales)

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([sales, rolling, rates, converted, daily_total])
    result = await runtime.materialize(
        pipeline, ["rolling", "converted"], partition="2025-01-05|us"
    )
    assert result["rolling"] == ["2025-01-03|us", "2025-01-04|us", "2025-01-05|us"]
    assert result["converted"] == "rate-2025-01-05"
    daily = await runtime.materialize(pipeline, "daily_total", partition="2025-01-05")
    assert daily["daily_total"] == ["2025-01-05|eu", "2025-01-05|us"]
    states = await runtime.status(pipeline.subset("daily_total"), partition="2025-01-05")
    assert states["daily_total"].current


def test_multi_mapping_definition_errors() -> None:
    @fs.asset(partitions=DAYS, deps_partitions={"sales": fs.MultiMapping({"date": fs.LastN(1)})})
    async def lacking(sales: Any) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError, match=r"\['region'\] have none"):
        fs.Pipeline([sales, lacking])

    @fs.asset(partitions=MULTI, deps_partitions={"sales": fs.MultiMapping({"planet": fs.LastN(1)})})
    async def unknown(sales: Any) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError, match="unknown dimensions"):
        fs.Pipeline([sales, unknown])
    with pytest.raises(fs.PartitionMappingError):
        fs.MultiMapping({})
