"""Partition mappings: which upstream partitions an asset reads, in runs and in status."""

from __future__ import annotations

from typing import Any

import pytest

import flowstone as fs

DAYS = fs.DailyPartitions(start="2025-01-01", end="2025-03-01")
WEEKS = fs.WeeklyPartitions(start="2025-01-06", end="2025-03-03")
MONTHS = fs.MonthlyPartitions(start="2025-01", end="2025-03")


def make_orders(calls: list[str], version: str = "1") -> fs.AssetDef[..., Any]:
    @fs.asset(partitions=DAYS, code_version=version)
    async def orders(ctx: fs.Context) -> list[dict[str, int]]:
        assert ctx.partition is not None
        calls.append(ctx.partition)
        return [{"total": int(ctx.partition[-2:])}]

    return orders


@fs.asset(partitions=WEEKS, deps_partitions={"orders": fs.TimeWindowMapping()})
async def weekly_revenue(orders: dict[str, list[dict[str, int]]]) -> dict[str, int]:
    return {day: sum(o["total"] for o in rows) for day, rows in orders.items()}


async def test_weekly_reads_its_seven_days_keyed_by_partition_in_order() -> None:
    calls: list[str] = []
    pipeline = fs.Pipeline([make_orders(calls), weekly_revenue])
    result = await fs.Runtime().materialize(pipeline, "weekly_revenue", partition="2025-01-13")
    days = [f"2025-01-{d}" for d in range(13, 20)]
    assert list(result["weekly_revenue"]) == days
    assert result["weekly_revenue"]["2025-01-15"] == 15
    assert sorted(calls) == days


async def test_upstream_partitions_are_reused_when_current() -> None:
    calls: list[str] = []
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders(calls), weekly_revenue])
    await runtime.materialize(pipeline, "orders", partition="2025-01-14")
    calls.clear()
    await runtime.materialize(pipeline, "weekly_revenue", partition="2025-01-13")
    assert "2025-01-14" not in calls
    assert len(calls) == 6
    records = await runtime.history("orders", "2025-01-14")
    assert records[0].reused


async def test_without_deps_a_missing_partition_is_a_typed_error_naming_it() -> None:
    calls: list[str] = []
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders(calls), weekly_revenue])
    for day in ("2025-01-13", "2025-01-14"):
        await runtime.materialize(pipeline, "orders", partition=day)
    with pytest.raises(fs.MissingPartitionsError) as info:
        await runtime.materialize(
            pipeline, "weekly_revenue", partition="2025-01-13", with_deps=False
        )
    error = info.value
    assert isinstance(error, fs.MissingInputError)
    assert error.keys == tuple(f"2025-01-{d}" for d in range(15, 20))
    assert "weekly_revenue" in str(error) and "'2025-01-15'" in str(error)


async def test_an_optional_mapping_skips_missing_partitions() -> None:
    @fs.asset(
        name="weekly_revenue",
        partitions=WEEKS,
        deps_partitions={"orders": fs.TimeWindowMapping(optional=True)},
    )
    async def partial(orders: dict[str, list[dict[str, int]]]) -> list[str]:
        return list(orders)

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders([]), partial])
    await runtime.materialize(pipeline, "orders", partition="2025-01-16")
    result = await runtime.materialize(
        pipeline, "weekly_revenue", partition="2025-01-13", with_deps=False
    )
    assert result["weekly_revenue"] == ["2025-01-16"]


async def test_a_failed_upstream_partition_fails_the_dependent_naming_it() -> None:
    @fs.asset(partitions=DAYS)
    async def orders(ctx: fs.Context) -> int:
        if ctx.partition == "2025-01-15":
            raise ValueError("bad day")
        return 1

    pipeline = fs.Pipeline([orders, weekly_revenue])
    runtime = fs.Runtime()
    result = await runtime.materialize(
        pipeline, "weekly_revenue", partition="2025-01-13", raise_on_error=False
    )
    assert result.status is fs.RunStatus.FAILED
    error = result.errors["weekly_revenue"]
    assert isinstance(error, fs.MissingPartitionsError) and error.failed
    assert error.keys == ("2025-01-15",)
    assert "bad day" in str(error.__cause__)
    with pytest.raises(fs.MissingPartitionsError, match="'2025-01-15' failed in this run"):
        await runtime.materialize(pipeline, "weekly_revenue", partition="2025-01-13")


async def test_a_skipped_upstream_partition_skips_the_dependent_with_the_reason() -> None:
    @fs.asset(partitions=DAYS)
    async def orders(ctx: fs.Context) -> int:
        if ctx.partition == "2025-01-15":
            raise fs.SkipAsset("closed")
        return 1

    result = await fs.Runtime().materialize(
        fs.Pipeline([orders, weekly_revenue]), "weekly_revenue", partition="2025-01-13"
    )
    outcome = result.outcomes["weekly_revenue"]
    assert outcome.status is fs.Status.SKIPPED
    assert outcome.reason == "input 'orders' partition '2025-01-15' skipped"


async def test_a_waiting_upstream_partition_makes_the_dependent_and_the_run_wait() -> None:
    opened: set[str] = set()

    @fs.asset(partitions=DAYS)
    async def orders(ctx: fs.Context) -> list[dict[str, int]]:
        if ctx.partition == "2025-01-15" and "2025-01-15" not in opened:
            raise fs.Suspended("waiting for the day to close")
        return [{"total": 1}]

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([orders, weekly_revenue])
    first = await runtime.materialize(pipeline, "weekly_revenue", partition="2025-01-13")
    assert first.status is fs.RunStatus.WAITING
    assert first.outcomes["weekly_revenue"].status is fs.Status.WAITING
    opened.add("2025-01-15")
    again = await runtime.materialize(
        pipeline, "weekly_revenue", partition="2025-01-13", run_id=first.run_id
    )
    assert again.ok and len(again["weekly_revenue"]) == 7
    assert again.resumed and set(again.outcomes) == {"weekly_revenue"}


@pytest.mark.parametrize(
    ("upstream", "downstream", "key", "expected"),
    [
        (DAYS, MONTHS, "2025-02", 28),
        (
            fs.HourlyPartitions(start="2025-03-29", end="2025-04-01", timezone="Europe/Berlin"),
            fs.DailyPartitions(start="2025-03-29", end="2025-04-01", timezone="Europe/Berlin"),
            "2025-03-30",
            23,
        ),
        (WEEKS, DAYS, "2025-01-15", 1),
    ],
)
async def test_time_window_mapping_between_partitionings(
    upstream: fs.PartitionsDefinition, downstream: fs.PartitionsDefinition, key: str, expected: int
) -> None:
    @fs.asset(partitions=upstream)
    async def source(ctx: fs.Context) -> str:
        assert ctx.partition is not None
        return ctx.partition

    @fs.asset(partitions=downstream, deps_partitions={"source": fs.TimeWindowMapping()})
    async def target(source: dict[str, str]) -> dict[str, str]:
        return source

    result = await fs.Runtime().materialize(fs.Pipeline([source, target]), partition=key)
    assert len(result["target"]) == expected
    assert all(k == v for k, v in result["target"].items())
    if upstream is WEEKS:
        assert list(result["target"]) == ["2025-01-13"]


async def test_last_n_and_offset() -> None:
    @fs.asset(partitions=DAYS, deps_partitions={"orders": fs.LastN(7)})
    async def rolling(orders: dict[str, Any]) -> list[str]:
        return list(orders)

    @fs.asset(partitions=DAYS, deps_partitions={"orders": fs.Offset(-1, optional=True)})
    async def yesterday(orders: list[dict[str, int]] | None = None) -> int | None:
        return None if orders is None else orders[0]["total"]

    pipeline = fs.Pipeline([make_orders([]), rolling, yesterday])
    runtime = fs.Runtime()
    result = await runtime.materialize(pipeline, partition="2025-01-10")
    assert result["rolling"] == [f"2025-01-{d:02}" for d in range(4, 11)]
    assert result["yesterday"] == 9
    early = await runtime.materialize(pipeline, partition="2025-01-01")
    assert early["rolling"] == ["2025-01-01"]  # the window is clipped at the first day
    assert early["yesterday"] is None  # no day before the first: optional, so the default


async def test_offset_out_of_range_is_an_error_unless_optional() -> None:
    @fs.asset(partitions=DAYS, deps_partitions={"orders": fs.Offset(-1)})
    async def yesterday(orders: Any) -> Any:
        return orders

    with pytest.raises(fs.MissingPartitionsError, match="no partition of it maps to this one"):
        await fs.Runtime().materialize(
            fs.Pipeline([make_orders([]), yesterday]), "yesterday", partition="2025-01-01"
        )


async def test_all_partitions_and_static_mapping() -> None:
    regions = fs.StaticPartitions(["eu", "us", "apac"])

    @fs.asset(partitions=regions)
    async def sales(ctx: fs.Context) -> str:
        return f"sales-{ctx.partition}"

    @fs.asset(deps_partitions={"sales": fs.AllPartitions()})
    async def report(sales: dict[str, str]) -> dict[str, str]:
        return sales

    markets = fs.StaticPartitions(["west", "east"])

    @fs.asset(
        partitions=markets,
        deps_partitions={"sales": fs.StaticMapping({"west": ["us", "eu"], "east": "apac"})},
    )
    async def market(sales: dict[str, str]) -> list[str]:
        return list(sales)

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([sales, report, market])
    result = await runtime.materialize(pipeline, "report")
    assert result["report"] == {"eu": "sales-eu", "us": "sales-us", "apac": "sales-apac"}
    west = await runtime.materialize(pipeline, "market", partition="west")
    assert west["market"] == ["eu", "us"]  # in the dependency's partition order


async def test_status_follows_the_mapping() -> None:
    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders([]), weekly_revenue])
    await runtime.materialize(pipeline, "weekly_revenue", partition="2025-01-13")
    states = await runtime.status(pipeline, partition="2025-01-13")
    assert states["weekly_revenue"].state == "current"
    # A day of another week changes: this week stays current.
    await runtime.invalidate("orders", "2025-01-20")
    states = await runtime.status(pipeline, partition="2025-01-13")
    assert states["weekly_revenue"].state == "current"
    # One of its seven days changes: it is stale, and a run recomputes it.
    await runtime.invalidate("orders", "2025-01-16")
    states = await runtime.status(pipeline, partition="2025-01-13")
    assert states["weekly_revenue"].state == "stale"
    calls: list[str] = []
    changed = fs.Pipeline([make_orders(calls, version="2"), weekly_revenue])
    result = await runtime.materialize(changed, "weekly_revenue", partition="2025-01-13")
    assert result.ok and len(calls) == 7
    assert (await runtime.status(changed, partition="2025-01-13"))["weekly_revenue"].current


async def test_reuse_follows_the_mapping() -> None:
    @fs.asset(partitions=MONTHS, deps_partitions={"orders": fs.TimeWindowMapping()})
    async def monthly(orders: dict[str, Any]) -> int:
        return len(orders)

    @fs.asset(partitions=MONTHS)
    async def summary(monthly: int) -> int:
        return monthly

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders([]), monthly, summary])
    first = await runtime.materialize(pipeline, "summary", partition="2025-01")
    assert first["summary"] == 31
    again = await runtime.materialize(pipeline, "summary", partition="2025-01")
    assert again.outcomes["monthly"].record is not None
    assert again.outcomes["monthly"].record.reused
    await runtime.invalidate("orders", "2025-01-31")
    # The day is recomputed (same version), so the month's inputs are unchanged: reused.
    third = await runtime.materialize(pipeline, "summary", partition="2025-01")
    assert third.outcomes["monthly"].record is not None
    assert third.outcomes["monthly"].record.reused
    changed = fs.Pipeline([make_orders([], version="2"), monthly, summary])
    fourth = await runtime.materialize(changed, "summary", partition="2025-01")
    assert fourth.outcomes["monthly"].record is not None
    assert not fourth.outcomes["monthly"].record.reused


async def test_backfill_over_weeks_canonicalizes_against_the_weekly_asset() -> None:
    @fs.asset(partitions=MONTHS, deps_partitions={"orders": fs.TimeWindowMapping()})
    async def monthly(orders: dict[str, Any]) -> int:
        return len(orders)

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders([]), monthly])
    result = await fs.backfill(pipeline, "monthly", partitions=MONTHS, runtime=runtime)
    assert result.succeeded == 2
    again = await fs.backfill(pipeline, "monthly", partitions=MONTHS, runtime=runtime)
    assert again.skipped == 2


class EveryOther:
    """A custom mapping: the partitions of the same month with an even day."""

    many = True
    optional = False

    def upstream_keys(self, key: str | None, downstream: Any, upstream: Any) -> list[str | None]:
        return [k for k in upstream.keys() if key and k.startswith(key) and int(k[-2:]) % 2 == 0]

    def check(self, downstream: Any, upstream: Any, *, asset: str, dependency: str) -> None:
        if upstream is None:
            raise fs.PartitionMappingError(asset, dependency, "needs partitions")


async def test_a_custom_mapping_implements_the_protocol() -> None:
    assert isinstance(EveryOther(), fs.PartitionMapping)

    @fs.asset(partitions=MONTHS, deps_partitions={"orders": EveryOther()})
    async def even(orders: dict[str, Any]) -> int:
        return len(orders)

    result = await fs.Runtime().materialize(
        fs.Pipeline([make_orders([]), even]), "even", partition="2025-02"
    )
    assert result["even"] == 14


# -- definition-time errors ---------------------------------------------------------------


def test_deps_partitions_must_name_a_dependency() -> None:
    with pytest.raises(fs.InvalidAssetError, match="'nope', which is not one of its dependencies"):

        @fs.asset(partitions=WEEKS, deps_partitions={"nope": fs.TimeWindowMapping()})
        async def weekly(orders: int) -> int:
            return orders


def test_deps_partitions_values_must_be_mappings() -> None:
    with pytest.raises(fs.InvalidAssetError, match=r"deps_partitions\['orders'\]"):

        @fs.asset(partitions=WEEKS, deps_partitions={"orders": "weekly"})  # type: ignore[dict-item]
        async def weekly(orders: int) -> int:
            return orders


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fs.LastN(0), "LastN"),
        (lambda: fs.LastN(True), "LastN"),
        (lambda: fs.Offset(0), "Offset"),
        (lambda: fs.StaticMapping({}), "StaticMapping"),
        (lambda: fs.TimeWindowMapping(optional="yes"), "optional"),
    ],
)
def test_malformed_mappings_are_rejected(make: Any, message: str) -> None:
    with pytest.raises(fs.PartitionMappingError, match=message):
        make()


def test_time_window_mapping_from_static_partitions_is_rejected_naming_asset_and_dep() -> None:
    @fs.asset(partitions=fs.StaticPartitions(["a", "b"]))
    async def letters() -> int:
        return 1

    @fs.asset(partitions=WEEKS, deps_partitions={"letters": fs.TimeWindowMapping()})
    async def weekly(letters: dict[str, int]) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError) as info:
        fs.Pipeline([letters, weekly])
    assert info.value.asset == "weekly" and info.value.dependency == "letters"
    assert isinstance(info.value, fs.DefinitionError)


def test_incompatible_positional_and_static_mappings_are_rejected() -> None:
    @fs.asset(partitions=WEEKS, deps_partitions={"orders": fs.LastN(2)})
    async def weekly(orders: Any) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError, match="partitioned alike"):
        fs.Pipeline([make_orders([]), weekly])

    @fs.asset(partitions=DAYS, deps_partitions={"orders": fs.StaticMapping({"2025-01-02": "x"})})
    async def static(orders: Any) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError, match="'x', not a partition"):
        fs.Pipeline([make_orders([]), static])

    @fs.asset(deps_partitions={"orders": fs.IdentityMapping()})
    async def flat(orders: Any) -> int:
        return 1

    with pytest.raises(fs.PartitionMappingError, match="AllPartitions"):
        fs.Pipeline([make_orders([]), flat])


def test_weekly_partitions() -> None:
    weeks = fs.WeeklyPartitions(start="2025-01-05", end="2025-01-26", week_start="sunday")
    assert weeks.keys() == ("2025-01-05", "2025-01-12", "2025-01-19")
    assert weeks.week_start == "sunday"
    with pytest.raises(fs.PartitionError, match="did you mean '2025-01-06'"):
        fs.WeeklyPartitions(start="2025-01-07")
    with pytest.raises(fs.PartitionError, match="week_start"):
        fs.WeeklyPartitions(start="2025-01-06", week_start="someday")
    assert fs.WeeklyPartitions(start="2025-01-06") != fs.WeeklyPartitions(
        start="2025-01-06", week_start=0, fmt="%Y/%m/%d"
    )
    assert "week_start='sunday'" in repr(weeks)


def test_graph_and_notebook_repr_show_mappings_on_edges() -> None:
    pipeline = fs.Pipeline([make_orders([]), weekly_revenue])
    assert "weekly_revenue <- orders [TimeWindowMapping()]" in pipeline.graph("text")
    assert 'n0 -->|"TimeWindowMapping()"| n1' in pipeline.graph("mermaid")
    assert '"orders" -> "weekly_revenue" [label="TimeWindowMapping()"];' in pipeline.graph("dot")
    assert "TimeWindowMapping()" in pipeline._repr_html_()
    assert pipeline.info("weekly_revenue")["deps_partitions"] == {"orders": "TimeWindowMapping()"}
    plain = fs.Pipeline([make_orders([])])
    assert "[" not in plain.graph("text")


async def test_a_custom_mapping_naming_a_bad_key_fails_with_a_partition_error() -> None:
    class Wrong(EveryOther):
        def upstream_keys(
            self, key: str | None, downstream: Any, upstream: Any
        ) -> list[str | None]:
            return ["2025-13-01"]

    @fs.asset(partitions=MONTHS, deps_partitions={"orders": Wrong()})
    async def wrong(orders: dict[str, Any]) -> int:
        return len(orders)

    runtime = fs.Runtime()
    with pytest.raises(fs.PartitionError, match="'2025-13-01': malformed"):
        await runtime.materialize(
            fs.Pipeline([make_orders([]), wrong]), "wrong", partition="2025-02"
        )
    (run,) = await runtime.store.list_runs()
    assert run.status is fs.RunStatus.FAILED


async def test_invalidate_downstream_follows_the_mapping() -> None:
    @fs.asset(partitions=WEEKS)
    async def weekly_report(weekly_revenue: dict[str, int]) -> int:
        return sum(weekly_revenue.values())

    runtime = fs.Runtime()
    pipeline = fs.Pipeline([make_orders([]), weekly_revenue, weekly_report])
    for week in ("2025-01-13", "2025-01-20"):
        await runtime.materialize(pipeline, "weekly_report", partition=week)
    invalidated = await runtime.invalidate("orders", "2025-01-15", downstream=pipeline)
    assert invalidated == ["orders", "weekly_revenue", "weekly_report"]
    states = await runtime.status(pipeline, partition="2025-01-13")
    assert states["weekly_revenue"].state == "stale"
    assert states["weekly_report"].state == "stale"
    later = await runtime.status(pipeline, partition="2025-01-20")
    assert later["weekly_revenue"].current and later["weekly_report"].current
