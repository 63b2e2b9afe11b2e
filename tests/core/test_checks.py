"""Asset checks: definition errors, running after the asset, blocking, results, events."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.events import AssetSkipped, CheckCompleted


@fs.asset
def orders() -> list[dict[str, int]]:
    return [{"id": 1, "total": 5}, {"id": 2, "total": -1}]


@fs.asset
def revenue(orders: list[dict[str, int]]) -> int:
    return sum(o["total"] for o in orders)


@fs.asset
def report(revenue: int) -> str:
    return f"revenue {revenue}"


@fs.asset
def customers() -> list[str]:
    return ["ann", "bob"]


@fs.check(asset="orders", severity="error")
async def no_negative_totals(orders: list[dict[str, int]]) -> fs.CheckResult:
    bad = [o for o in orders if o["total"] < 0]
    return fs.CheckResult(passed=not bad, metadata={"bad": len(bad)})


@fs.check(asset="customers")
def three_customers(customers: list[str]) -> bool:
    return len(customers) == 3


def pipeline(*extra: Any) -> fs.Pipeline:
    return fs.Pipeline([orders, revenue, report, customers, *extra])


# -- definition ------------------------------------------------------------------------


def test_the_decorator_makes_a_check_def() -> None:
    assert isinstance(no_negative_totals, fs.CheckDef)
    assert (no_negative_totals.name, no_negative_totals.asset) == ("no_negative_totals", "orders")
    assert no_negative_totals.severity == "error" and no_negative_totals.blocking
    assert three_customers.severity == "warn" and not three_customers.blocking
    assert three_customers(["a", "b", "c"]) is True  # callable directly, for unit tests


def test_bare_decorator_takes_the_asset_from_the_parameter() -> None:
    @fs.check
    def has_rows(orders: list[dict[str, int]]) -> bool:
        return bool(orders)

    assert has_rows.asset == "orders" and has_rows.severity == "warn"


def test_a_check_may_take_the_asset_itself_and_a_context() -> None:
    @fs.check(asset=orders, name="ids")
    def ids_positive(ctx: fs.Context, orders: list[dict[str, int]]) -> bool:
        return all(o["id"] > 0 for o in orders)

    assert (ids_positive.name, ids_positive.asset, ids_positive.context_param) == (
        "ids",
        "orders",
        "ctx",
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: fs.check(asset="orders", severity="fatal")(lambda orders: True), "name="),
        (
            lambda: fs.check(asset="orders", severity="fatal", name="x")(lambda orders: True),
            "severity= must be 'warn' or 'error'",
        ),
        (lambda: fs.check(asset="orders", name="x")(lambda order: True), "does not match"),
        (lambda: fs.check(asset="orders", name="x")(lambda a, b: True), "one parameter"),
        (lambda: fs.check(asset="", name="x")(lambda orders: True), "asset= must name"),
        (lambda: fs.check(name="x")(lambda: True), "name the asset"),
        (lambda: fs.check(asset="orders", name="x")(lambda *orders: True), r"\*orders"),
    ],
)
def test_bad_definitions_are_typed_errors_naming_the_check(make: Any, match: str) -> None:
    with pytest.raises(fs.InvalidCheckError, match=match) as info:
        make()
    assert isinstance(info.value, fs.DefinitionError)


def test_a_check_of_an_asset_not_in_the_pipeline_is_refused() -> None:
    @fs.check(asset="order")
    def typo(order: list[dict[str, int]]) -> bool:
        return True

    with pytest.raises(fs.InvalidCheckError, match="did you mean 'orders'") as info:
        pipeline(typo)
    assert info.value.check == "typo"


def test_two_checks_of_one_asset_may_not_share_a_name() -> None:
    @fs.check(asset="orders", name="no_negative_totals")
    def other(orders: list[dict[str, int]]) -> bool:
        return True

    with pytest.raises(fs.InvalidCheckError, match="share this name"):
        pipeline(no_negative_totals, other)
    assert len(pipeline(no_negative_totals, no_negative_totals).checks) == 1  # the same one


def test_the_pipeline_keeps_checks_by_asset_and_in_subsets() -> None:
    p = pipeline(no_negative_totals, three_customers)
    assert p.checks_of("orders") == (no_negative_totals,)
    assert p.checks_of("revenue") == ()
    assert p.info("orders")["checks"] == ["no_negative_totals"]
    sub = p.subset("revenue")
    assert sub.checks == (no_negative_totals,)


# -- running in a run ------------------------------------------------------------------


async def test_a_failed_error_check_blocks_dependents_and_fails_the_run(
    flowstone_runtime: fs.Runtime,
) -> None:
    result = await flowstone_runtime.materialize(pipeline(no_negative_totals), raise_on_error=False)
    assert result.status is fs.RunStatus.FAILED and not result.ok
    assert result["orders"] == [{"id": 1, "total": 5}, {"id": 2, "total": -1}]  # still stored
    assert set(result.skipped) == {"revenue", "report"}
    assert result.outcomes["revenue"].reason == "input 'orders' failed check 'no_negative_totals'"
    assert result.outcomes["report"].reason == "input 'revenue' skipped"
    assert set(result.succeeded) == {"orders", "customers"}
    (record,) = result.checks["orders"]
    assert (record.check, record.severity, record.passed) == ("no_negative_totals", "error", False)
    assert record.metadata == {"bad": 1} and record.duration is not None
    assert record.run_id == result.run_id and record.data_version is not None
    error = result.errors["orders"]
    assert isinstance(error, fs.CheckFailedError) and isinstance(error, fs.ExecutionError)
    assert error.checks == ("no_negative_totals",)
    assert result.records["orders"].metadata["checks"] == {
        "no_negative_totals": {"passed": False, "severity": "error"}
    }


async def test_materialize_raises_the_check_failure_with_the_result(
    flowstone_runtime: fs.Runtime,
) -> None:
    with pytest.raises(fs.CheckFailedError, match="failed check 'no_negative_totals'") as info:
        await flowstone_runtime.materialize(pipeline(no_negative_totals))
    assert info.value.result.skipped == ("revenue", "report")  # type: ignore[attr-defined]


async def test_a_failed_warn_check_only_records(flowstone_runtime: fs.Runtime) -> None:
    result = await flowstone_runtime.materialize(pipeline(three_customers))
    assert result.ok and not result.errors
    assert set(result.succeeded) == {"orders", "revenue", "report", "customers"}
    (record,) = result.failed_checks["customers"]
    assert (record.check, record.severity, record.passed) == ("three_customers", "warn", False)
    assert "1 failed: customers.three_customers" in repr(result)


async def test_passing_checks_let_everything_run(flowstone_runtime: fs.Runtime) -> None:
    @fs.check(asset="orders", severity="error")
    def has_orders(orders: list[dict[str, int]]) -> fs.CheckResult:
        return fs.CheckResult(passed=bool(orders), description="at least one order")

    result = await flowstone_runtime.materialize(pipeline(has_orders))
    assert result.ok and result["report"] == "revenue 4"
    (record,) = result.checks["orders"]
    assert record.passed and record.metadata == {"description": "at least one order"}
    assert repr(result).endswith("; 1 check passed)>")
    assert not result.failed_checks


async def test_checks_false_skips_them(flowstone_runtime: fs.Runtime) -> None:
    result = await flowstone_runtime.materialize(pipeline(no_negative_totals), checks=False)
    assert result.ok and result["report"] == "revenue 4"
    assert result.checks == {}
    assert await flowstone_runtime.check_history("orders") == []
    assert "checks" not in result.records["orders"].metadata


async def test_module_level_api_passes_checks_false() -> None:
    result = await fs.materialize(pipeline(no_negative_totals), checks=False)
    assert result.ok


async def test_a_check_that_raises_is_recorded_failed_with_its_error(
    flowstone_runtime: fs.Runtime,
) -> None:
    @fs.check(asset="orders", severity="error")
    def broken(orders: list[dict[str, int]]) -> bool:
        raise LookupError("no such column")

    result = await flowstone_runtime.materialize(pipeline(broken), raise_on_error=False)
    (record,) = result.checks["orders"]
    assert not record.passed
    assert (record.error, record.error_type) == ("LookupError: no such column", "LookupError")
    assert result.outcomes["revenue"].reason == "input 'orders' failed check 'broken'"


async def test_a_check_returning_something_else_fails_clearly(
    flowstone_runtime: fs.Runtime,
) -> None:
    @fs.check(asset="customers")
    def counts(customers: list[str]) -> Any:
        return len(customers)

    result = await flowstone_runtime.materialize(pipeline(counts))
    (record,) = result.checks["customers"]
    assert not record.passed and record.error_type == "TypeError"
    assert record.error == ("TypeError: check 'counts' returned int, not a CheckResult or a bool")


async def test_a_plain_check_runs_in_a_worker_thread_and_gets_the_context(
    flowstone_runtime: fs.Runtime,
) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @fs.check(asset="customers")
    def where(ctx: fs.Context, customers: list[str]) -> bool:
        seen.update(thread=threading.get_ident(), asset=ctx.asset, run=ctx.run_id)
        seen["current"] = fs.current_context() is ctx
        return True

    result = await flowstone_runtime.materialize(pipeline(where))
    assert seen["thread"] != loop_thread
    assert (seen["asset"], seen["run"], seen["current"]) == ("customers", result.run_id, True)


async def test_dependents_wait_for_an_error_check_only(flowstone_runtime: fs.Runtime) -> None:
    """With an ``error`` check, dependents start after it; with ``warn`` checks only, the
    dependents go on while the check still runs (and the run waits for it at its end)."""
    order: list[str] = []
    release = anyio.Event()

    @fs.asset
    def first() -> int:
        return 1

    @fs.asset
    def second(first: int) -> int:
        order.append("second")
        release.set()
        return first + 1

    @fs.check(asset="first")
    async def slow_warn(first: int) -> bool:
        await release.wait()  # ends only once the dependent ran
        order.append("warn check")
        return True

    result = await flowstone_runtime.materialize([first, second, slow_warn])
    assert order == ["second", "warn check"] and result.checks["first"][0].passed

    order.clear()

    @fs.check(asset="first", severity="error")
    async def blocking(first: int) -> bool:
        await anyio.lowlevel.checkpoint()
        order.append("error check")
        return True

    await flowstone_runtime.materialize([first, second, blocking])
    assert order == ["error check", "second"]


async def test_checks_run_concurrently_with_unrelated_assets(
    flowstone_runtime: fs.Runtime,
) -> None:
    started = anyio.Event()

    @fs.asset
    def a() -> int:
        return 1

    @fs.asset
    async def unrelated() -> int:
        await started.wait()  # only the check's start lets it end
        return 2

    @fs.check(asset="a", severity="error")
    async def waits_for_nothing(a: int) -> bool:
        started.set()
        return True

    with anyio.fail_after(10):
        result = await flowstone_runtime.materialize([a, unrelated, waits_for_nothing])
    assert result.ok


async def test_a_reused_value_is_not_checked_again(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    def greeting(customers: list[str]) -> str:
        return ", ".join(customers)

    p = fs.Pipeline([customers, greeting, three_customers])
    await flowstone_runtime.materialize(p, select="customers")
    result = await flowstone_runtime.materialize(p, select="greeting")
    assert result.records["customers"].reused and not result.outcomes["customers"].checks
    assert len(await flowstone_runtime.check_history("customers")) == 1
    forced = await flowstone_runtime.materialize(p, select="greeting", force=True)
    assert forced.checks["customers"][0].check == "three_customers"


async def test_a_reused_value_that_failed_an_error_check_keeps_blocking(
    flowstone_runtime: fs.Runtime,
) -> None:
    p = pipeline(no_negative_totals)
    await flowstone_runtime.materialize(p, select="orders", raise_on_error=False)
    result = await flowstone_runtime.materialize(p, select="revenue", raise_on_error=False)
    assert result.records["orders"].reused
    assert result.outcomes["revenue"].reason == "input 'orders' failed check 'no_negative_totals'"
    assert result.status is fs.RunStatus.FAILED
    assert len(await flowstone_runtime.check_history("orders")) == 1  # not run again
    assert result.checks["orders"][0].run_id != result.run_id  # the recorded verdict


async def test_a_reused_value_never_checked_is_checked_when_reused(
    flowstone_runtime: fs.Runtime,
) -> None:
    p = pipeline(no_negative_totals)
    await flowstone_runtime.materialize(p, select="orders", checks=False)
    result = await flowstone_runtime.materialize(p, select="revenue", raise_on_error=False)
    assert result.records["orders"].reused
    assert result.skipped == ("revenue",)
    (record,) = await flowstone_runtime.check_history("orders")
    assert record.run_id == result.run_id and not record.passed


async def test_an_optional_input_that_failed_a_check_gets_its_default(
    flowstone_runtime: fs.Runtime,
) -> None:
    @fs.asset(optional_deps=["orders"])
    def lenient(orders: list[dict[str, int]] | None = None) -> int:
        return -1 if orders is None else len(orders)

    result = await flowstone_runtime.materialize(
        [orders, lenient, no_negative_totals], raise_on_error=False
    )
    assert result["lenient"] == -1


async def test_checks_run_per_partition(flowstone_runtime: fs.Runtime) -> None:
    days = fs.DailyPartitions(start="2025-01-01")

    @fs.asset(partitions=days)
    def daily(ctx: fs.Context) -> list[dict[str, Any]]:
        return [{"day": ctx.partition}] * (2 if ctx.partition == "2025-01-02" else 1)

    @fs.check(asset="daily")
    def one_row(daily: list[dict[str, Any]]) -> bool:
        return len(daily) == 1

    p = fs.Pipeline([daily, one_row])
    await flowstone_runtime.backfill(p, partitions=["2025-01-01", "2025-01-02"])
    history = await flowstone_runtime.check_history("daily")
    assert {(r.partition, r.passed) for r in history} == {
        ("2025-01-01", True),
        ("2025-01-02", False),
    }
    (only,) = await flowstone_runtime.check_history(daily, "2025-01-02")
    assert not only.passed


async def test_a_backfill_without_checks_runs_none(flowstone_runtime: fs.Runtime) -> None:
    days = fs.DailyPartitions(start="2025-01-01")
    ran: list[str | None] = []

    @fs.asset(partitions=days)
    def daily(ctx: fs.Context) -> int:
        return 1

    @fs.check(asset="daily", severity="error")
    def never(ctx: fs.Context, daily: int) -> bool:
        ran.append(ctx.partition)
        return False

    p = fs.Pipeline([daily, never])
    outcome = await flowstone_runtime.backfill(p, partitions=["2025-01-01"], checks=False)
    assert outcome.ok and ran == []
    assert await flowstone_runtime.check_history("daily") == []
    checked = await fs.backfill(
        p, partitions=["2025-01-02"], runtime=flowstone_runtime, checks=True
    )
    assert checked.failed == 1 and ran == ["2025-01-02"]


async def test_check_results_are_events(flowstone_runtime: fs.Runtime) -> None:
    sink = fs.MemoryEventSink()
    flowstone_runtime.add_event_sink(sink)
    await flowstone_runtime.materialize(pipeline(no_negative_totals), raise_on_error=False)
    (event,) = [e for e in sink.events if isinstance(e, CheckCompleted)]
    assert (event.asset, event.check, event.severity, event.passed) == (
        "orders",
        "no_negative_totals",
        "error",
        False,
    )
    assert event.metadata == {"bad": 1} and event.error is None
    skipped = [e for e in sink.events if isinstance(e, AssetSkipped)]
    assert skipped[0].reason == "input 'orders' failed check 'no_negative_totals'"
    level, text, args = event.log_entry()
    assert level == 40 and text % args == "asset orders failed check no_negative_totals"


async def test_the_html_repr_shows_checks(flowstone_runtime: fs.Runtime) -> None:
    result = await flowstone_runtime.materialize(
        pipeline(no_negative_totals, three_customers), raise_on_error=False
    )
    shown = result._repr_html_()
    assert "<th>checks</th>" in shown
    assert "✗ no_negative_totals" in shown and "✗ three_customers" in shown


# -- run_checks and check_history ------------------------------------------------------


async def test_run_checks_runs_them_alone_on_the_stored_value(
    flowstone_runtime: fs.Runtime,
) -> None:
    p = pipeline(no_negative_totals, three_customers)
    first = await flowstone_runtime.materialize(p, checks=False)
    records = await flowstone_runtime.run_checks("orders")
    (record,) = records
    assert (record.check, record.passed, record.run_id) == (
        "no_negative_totals",
        False,
        first.run_id,
    )
    assert record.data_version == first.records["orders"].data_version
    history = await flowstone_runtime.check_history("orders")
    assert history == records
    again = await flowstone_runtime.run_checks(orders, checks=[no_negative_totals])
    assert [r.check for r in await flowstone_runtime.check_history("orders")] == [
        "no_negative_totals",
        "no_negative_totals",
    ]
    assert (await flowstone_runtime.check_history("orders"))[0] == again[0]  # newest first


async def test_run_checks_errors(flowstone_runtime: fs.Runtime) -> None:
    with pytest.raises(fs.ConfigurationError, match="no check of asset 'orders' is known"):
        await flowstone_runtime.run_checks("orders")
    flowstone_runtime.register(fs.Pipeline([orders, no_negative_totals], name="shop"))
    with pytest.raises(fs.ValueNotFoundError):
        await flowstone_runtime.run_checks("orders")  # nothing stored yet


async def test_check_history_filters_by_check_and_limits(flowstone_runtime: fs.Runtime) -> None:
    @fs.check(asset="orders")
    def has_ids(orders: list[dict[str, int]]) -> bool:
        return all("id" in o for o in orders)

    p = pipeline(no_negative_totals, has_ids)
    for _ in range(2):
        await flowstone_runtime.materialize(p, select="orders", raise_on_error=False)
    assert len(await flowstone_runtime.check_history("orders")) == 4
    only = await flowstone_runtime.check_history("orders", check=has_ids)
    assert [r.check for r in only] == ["has_ids", "has_ids"] and all(r.passed for r in only)
    assert len(await flowstone_runtime.check_history("orders", limit=1)) == 1


async def test_a_resumed_run_keeps_blocking_on_the_recorded_verdict(
    flowstone_runtime: fs.Runtime,
) -> None:
    p = pipeline(no_negative_totals)
    first = await flowstone_runtime.materialize(p, run_id="nightly", raise_on_error=False)
    assert first.skipped == ("revenue", "report")
    again = await flowstone_runtime.resume("nightly", p, raise_on_error=False)
    assert again.resumed and again.skipped == ("revenue", "report")
    assert again.outcomes["revenue"].reason == "input 'orders' failed check 'no_negative_totals'"
    assert len(await flowstone_runtime.check_history("orders")) == 1


async def test_run_checks_of_a_partitioned_asset_needs_its_key(
    flowstone_runtime: fs.Runtime,
) -> None:
    days = fs.DailyPartitions(start="2025-01-01")

    @fs.asset(partitions=days)
    def daily() -> int:
        return 1

    @fs.check(asset="daily")
    def positive(daily: int) -> bool:
        return daily > 0

    p = fs.Pipeline([daily, positive])
    await flowstone_runtime.materialize(p, partition="2025-01-03")
    with pytest.raises(fs.PartitionError):
        await flowstone_runtime.run_checks(daily)
    (record,) = await flowstone_runtime.run_checks(daily, "2025-1-3")  # made canonical
    assert (record.partition, record.passed) == ("2025-01-03", True)
