"""Routing: declarative and function routers, skips, decisions, errors and events."""

from __future__ import annotations

from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.routing import (
    InProcessRoutingCoordinator,
    InvalidChoiceError,
    InvalidRoutedAssetError,
    InvalidRouteError,
    RouteDecided,
    RoutedSpec,
    RouterSpec,
    RoutingDefinitionError,
    choice,
    routed_from,
    router,
)
from flowstone.protocols import RouteDecision


def region_pipeline(kind: str = "grid", calls: list[str] | None = None) -> fs.Pipeline:
    """The example of the issue: pick_region routes to by_grid or by_name."""
    ran = calls if calls is not None else []

    @fs.asset
    async def query() -> dict[str, Any]:
        return {"kind": kind, "name": "Oslo"}

    @fs.asset
    @router(
        choice("by_grid", when=lambda deps: deps["query"]["kind"] == "grid"),
        default="by_name",
        on_error="fail",
    )
    async def pick_region(query: dict[str, Any]) -> None: ...

    @fs.asset
    @routed_from("pick_region")
    async def by_grid(query: dict[str, Any]) -> str:
        ran.append("by_grid")
        return "grid-cell"

    @fs.asset
    @routed_from("pick_region")
    async def by_name(query: dict[str, Any]) -> str:
        ran.append("by_name")
        return f"named-{query['name']}"

    @fs.asset
    async def grid_detail(by_grid: str) -> str:
        ran.append("grid_detail")
        return by_grid.upper()

    @fs.asset(optional_deps=["by_grid", "by_name"])
    async def region(by_grid: str | None = None, by_name: str | None = None) -> str | None:
        return by_grid or by_name

    return fs.Pipeline([query, pick_region, by_grid, by_name, grid_detail, region], name="regions")


async def test_declarative_router_takes_matching_choice(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []
    result = await flowstone_runtime.materialize(region_pipeline("grid", calls))
    assert result["pick_region"] == "by_grid"
    assert result["region"] == "grid-cell"
    assert result["grid_detail"] == "GRID-CELL"
    assert set(calls) == {"by_grid", "grid_detail"}
    assert result.outcomes["by_name"].status is fs.Status.SKIPPED
    assert result.outcomes["by_name"].reason == "router 'pick_region' chose 'by_grid'"
    assert result.ok


async def test_declarative_router_falls_back_to_default(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []
    result = await flowstone_runtime.materialize(region_pipeline("name", calls))
    assert result["pick_region"] == "by_name"
    assert result["region"] == "named-Oslo"
    assert calls == ["by_name"]
    assert set(result.skipped) == {"by_grid", "grid_detail"}
    assert "input 'by_grid' skipped" in (result.outcomes["grid_detail"].reason or "")
    assert result.records["pick_region"].metadata["route"] == {
        "chosen": "by_name",
        "via": "default",
        "reused": False,
    }


async def test_first_matching_choice_wins(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def n() -> int:
        return 5

    @fs.asset
    @router(
        choice("small", when=lambda deps: deps["n"] < 3),
        choice("medium", when=lambda deps: deps["n"] < 10),
        choice("large", when=lambda deps: True),
    )
    async def size(n: int) -> None: ...

    routed = [
        routed_from("size")(fs.asset(name=name)(_constant(name)))
        for name in ("small", "medium", "large")
    ]
    result = await flowstone_runtime.materialize(fs.Pipeline([n, size, *routed]))
    assert result["size"] == "medium"
    assert result.succeeded.count("medium") == 1
    assert set(result.skipped) == {"small", "large"}


def _constant(value: Any) -> Any:
    async def fn() -> Any:
        return value

    return fn


async def test_async_predicate_and_parameter_names(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset(name="raw-query")
    async def raw_query() -> str:
        return "grid"

    async def is_grid(deps: Any) -> bool:
        return bool(deps["raw-query"] == deps["q"] == "grid")

    @fs.asset(deps={"q": "raw-query"})
    @router(choice("a", when=is_grid), default="b")
    async def pick(q: str) -> None: ...

    a = routed_from(pick)(fs.asset(name="a")(_constant("A")))
    b = routed_from("pick")(fs.asset(name="b")(_constant("B")))
    result = await flowstone_runtime.materialize(fs.Pipeline([raw_query, pick, a, b]))
    assert result["pick"] == "a" and result["a"] == "A"


async def test_no_default_and_no_match_skips_every_route(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    @router(choice("a", when=lambda deps: False))
    async def pick() -> None: ...

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    b = routed_from("pick")(fs.asset(name="b")(_constant("B")))
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a, b]))
    assert result.outcomes["pick"].status is fs.Status.SUCCEEDED
    assert result["pick"] is None
    assert set(result.skipped) == {"a", "b"}
    assert result.outcomes["a"].reason == "router 'pick' chose none of its routes"


@pytest.mark.parametrize("returned", ["b", "asset", None])
async def test_function_router_uses_return_value(
    flowstone_runtime: fs.Runtime, returned: str | None
) -> None:
    a = fs.asset(name="a")(_constant("A"))
    b = fs.asset(name="b")(_constant("B"))

    @fs.asset
    @router()
    async def pick() -> Any:
        return b if returned == "asset" else returned

    a, b = routed_from("pick")(a), routed_from("pick")(b)
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a, b]))
    if returned is None:
        assert result["pick"] is None and set(result.skipped) == {"a", "b"}
    else:
        assert result["pick"] == "b" and result["b"] == "B" and result.skipped == ("a",)
    assert result.records["pick"].metadata["route"]["via"] == "function"


async def test_sync_function_router(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    @router()
    def pick() -> str:
        return "a"

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a]))
    assert result["a"] == "A"


@pytest.mark.parametrize("chosen", ["nowhere", "plain", 42])
async def test_choosing_an_unrouted_asset_is_a_typed_error(
    flowstone_runtime: fs.Runtime, chosen: Any
) -> None:
    plain = fs.asset(name="plain")(_constant(1))

    @fs.asset
    @router(on_error="default", default="a")
    async def pick() -> Any:
        return chosen

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    result = await flowstone_runtime.materialize(
        fs.Pipeline([plain, pick, a]), ["pick", "a"], raise_on_error=False
    )
    error = result.errors["pick"]
    cause = error.__cause__
    assert isinstance(cause, InvalidRouteError)
    assert cause.router == "pick" and cause.chosen == chosen and cause.routed == ("a",)
    assert "router 'pick'" in str(cause) and repr(chosen) in str(cause) and "'a'" in str(cause)
    assert result.outcomes["a"].status is fs.Status.SKIPPED


async def test_on_error_fail_fails_router_and_skips_routes(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    @router(default="a", on_error="fail")
    async def pick() -> str:
        raise RuntimeError("no idea")

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))

    @fs.asset(optional_deps=["a"])
    async def tail(a: str | None = None) -> str:
        return a or "fallback"

    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a, tail]), raise_on_error=False)
    assert result.failed == ("pick",)
    assert isinstance(result.errors["pick"].__cause__, RuntimeError)
    assert result.outcomes["a"].status is fs.Status.SKIPPED
    assert result["tail"] == "fallback"


async def test_on_error_default_takes_default(
    flowstone_runtime: fs.Runtime, flowstone_events: fs.MemoryEventSink
) -> None:
    @fs.asset
    @router(choice("a", when=lambda deps: deps["missing"]), default="b", on_error="default")
    async def pick() -> None: ...

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    b = routed_from("pick")(fs.asset(name="b")(_constant("B")))
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a, b]))
    assert result["pick"] == "b" and result["b"] == "B"
    route = result.records["pick"].metadata["route"]
    assert route["via"] == "on_error" and route["error"].startswith("KeyError")
    (decided,) = [e for e in flowstone_events.events if isinstance(e, RouteDecided)]
    assert decided.via == "on_error" and isinstance(decided.error, KeyError)


async def test_predicate_error_is_annotated(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    @router(choice("a", when=lambda deps: 1 / 0 > 0))
    async def pick() -> None: ...

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a]), raise_on_error=False)
    cause = result.errors["pick"].__cause__
    assert isinstance(cause, ZeroDivisionError)
    assert any("choice 'a' of router 'pick'" in note for note in cause.__notes__)


async def test_skip_in_router_skips_routes(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    @router(on_error="default", default="a")
    async def pick() -> str:
        raise fs.SkipAsset("nothing to route")

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    result = await flowstone_runtime.materialize(fs.Pipeline([pick, a]))
    assert set(result.skipped) == {"pick", "a"}


# -- decisions -------------------------------------------------------------------------


def _counting_router(answers: list[str | None]) -> fs.Pipeline:
    @fs.asset
    @router()
    async def pick() -> str | None:
        return answers.pop(0)

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    b = routed_from("pick")(fs.asset(name="b")(_constant("B")))
    return fs.Pipeline([pick, a, b])


async def test_decision_is_recorded(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def source() -> int:
        return 1

    @fs.asset
    @router()
    async def pick(source: int) -> str:
        return "a"

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    result = await flowstone_runtime.materialize(fs.Pipeline([source, pick, a]))
    coordinator = flowstone_runtime.coordinators.get("router")
    assert isinstance(coordinator, InProcessRoutingCoordinator)
    decision = await coordinator.get_decision(result.run_id, "pick", None)
    assert decision is not None
    assert decision.chosen == "a" and decision.router == "pick" and decision.partition is None
    assert decision.input_versions == {"source": result.records["source"].data_version}
    assert decision.decided_at is not None


async def test_recorded_decision_is_reused_in_the_same_run(
    flowstone_runtime: fs.Runtime, flowstone_events: fs.MemoryEventSink
) -> None:
    coordinator = flowstone_runtime.coordinators.get("router")
    assert isinstance(coordinator, InProcessRoutingCoordinator)
    await coordinator.record_decision(
        RouteDecision(run_id="run-1", router="pick", partition=None, chosen="b")
    )
    answers: list[str | None] = ["a", "a"]
    pipeline = _counting_router(answers)
    result = await flowstone_runtime.materialize(pipeline, run_id="run-1")
    assert result["pick"] == "b" and result["b"] == "B"
    assert answers == ["a", "a"]  # the router function was not called
    (decided,) = [e for e in flowstone_events.events if isinstance(e, RouteDecided)]
    assert decided.reused and decided.via == "recorded" and decided.chosen == "b"

    forced = await flowstone_runtime.materialize(pipeline, run_id="run-1", force=True)
    assert forced["pick"] == "a" and forced["a"] == "A"
    assert forced.outcomes["b"].status is fs.Status.SKIPPED
    assert answers == ["a"]
    decision = await coordinator.get_decision("run-1", "pick", None)
    assert decision is not None and decision.chosen == "a"


async def test_resumed_run_keeps_its_path(flowstone_runtime: fs.Runtime) -> None:
    answers: list[str | None] = ["a", "b", "b"]
    pipeline = _counting_router(answers)
    first = await flowstone_runtime.materialize(pipeline, run_id="run-2")
    assert first["a"] == "A"

    # The router is redefined (another code version) between the two materializations of
    # the run; the recorded decision still holds.
    again = _counting_router(answers)
    second = await flowstone_runtime.materialize(again, run_id="run-2")
    assert second["pick"] == "a"
    assert second.outcomes["b"].status is fs.Status.SKIPPED
    assert answers == ["b", "b"]

    other_run = await flowstone_runtime.materialize(again, run_id="run-3")
    assert other_run["pick"] == "b"


async def test_router_reused_from_storage_is_loaded(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []
    pipeline = region_pipeline("name", calls)
    await flowstone_runtime.materialize(pipeline)
    calls.clear()
    result = await flowstone_runtime.materialize(pipeline, ["by_name", "by_grid"])
    assert result.records["pick_region"].reused
    assert result["by_name"] == "named-Oslo"
    assert result.outcomes["by_grid"].status is fs.Status.SKIPPED
    assert calls == ["by_name"]


async def test_partitioned_router_records_partition(flowstone_runtime: fs.Runtime) -> None:
    days = fs.StaticPartitions(["mon", "tue"])

    @fs.asset(partitions=days)
    @router()
    async def pick(ctx: fs.Context) -> str:
        return "a" if ctx.partition == "mon" else "b"

    a = routed_from("pick")(fs.asset(name="a", partitions=days)(_constant("A")))
    b = routed_from("pick")(fs.asset(name="b", partitions=days)(_constant("B")))
    pipeline = fs.Pipeline([pick, a, b])
    mon = await flowstone_runtime.materialize(pipeline, partition="mon")
    tue = await flowstone_runtime.materialize(pipeline, partition="tue")
    assert (mon["pick"], tue["pick"]) == ("a", "b")
    assert tue.outcomes["a"].status is fs.Status.SKIPPED
    coordinator = flowstone_runtime.coordinators.get("router")
    assert isinstance(coordinator, InProcessRoutingCoordinator)
    decision = await coordinator.get_decision(tue.run_id, "pick", "tue")
    assert decision is not None and decision.chosen == "b"


async def test_route_decided_event(
    flowstone_runtime: fs.Runtime, flowstone_events: fs.MemoryEventSink
) -> None:
    result = await flowstone_runtime.materialize(region_pipeline("grid"))
    (event,) = [e for e in flowstone_events.events if isinstance(e, RouteDecided)]
    assert event.asset == "pick_region" and event.chosen == "by_grid"
    assert event.via == "choice" and not event.reused and event.run_id == result.run_id


# -- definitions -----------------------------------------------------------------------


def test_specs_and_graph() -> None:
    pipeline = region_pipeline()
    assert isinstance(pipeline["pick_region"].kind_spec, RouterSpec)
    spec = pipeline["by_grid"].kind_spec
    assert isinstance(spec, RoutedSpec) and spec.router == "pick_region"
    assert spec.edge_style("pick_region") == "dashed" and spec.edge_style("query") == "solid"
    assert pipeline["by_grid"].kind == "routed" and pipeline["pick_region"].kind == "router"
    assert '"pick_region" -> "by_grid" [style=dashed]' in pipeline.graph("dot")
    assert "pick_region (routed)" in pipeline.graph("text")
    assert "pick_region" in pipeline["by_name"].deps


def test_router_fingerprint_follows_predicate_code() -> None:
    def make(threshold: int) -> fs.AssetDef[..., Any]:
        if threshold == 1:
            when = lambda deps: deps["n"] > 1  # noqa: E731
        else:
            when = lambda deps: deps["n"] > 2  # noqa: E731

        @fs.asset
        @router(choice("a", when=when))
        async def pick(n: int) -> None: ...

        return pick

    assert make(1).code_version == make(1).code_version
    assert make(1).code_version != make(2).code_version


def test_routed_from_missing_router() -> None:
    a = routed_from("ghost")(fs.asset(name="a")(_constant("A")))
    with pytest.raises(fs.DefinitionError, match="ghost"):
        fs.Pipeline([a])


def test_routed_from_an_asset_that_is_not_a_router() -> None:
    plain = fs.asset(name="plain")(_constant(1))
    a = routed_from("plain")(fs.asset(name="a")(_constant("A")))
    with pytest.raises(
        InvalidRoutedAssetError, match="'a'.*routed from 'plain'.*not a router"
    ) as caught:
        fs.Pipeline([plain, a])
    assert caught.value.asset == "a" and caught.value.router == "plain"
    assert isinstance(caught.value, fs.DefinitionError)


def test_choice_naming_an_unrouted_asset() -> None:
    plain = fs.asset(name="plain")(_constant(1))

    @fs.asset
    @router(choice("plain", when=lambda deps: True), default="a")
    async def pick() -> None: ...

    a = routed_from("pick")(fs.asset(name="a")(_constant("A")))
    with pytest.raises(InvalidChoiceError, match="choice 'plain' is not routed from it") as caught:
        fs.Pipeline([plain, pick, a])
    assert caught.value.router == "pick" and caught.value.choice == "plain"
    assert caught.value.routed == ("a",)


def test_choice_naming_an_asset_routed_from_another_router() -> None:
    @fs.asset
    @router(default="b")
    async def one() -> None: ...

    @fs.asset
    @router()
    async def two() -> None: ...

    b = routed_from("two")(fs.asset(name="b")(_constant("B")))
    with pytest.raises(InvalidChoiceError, match="'one'.*choice 'b'"):
        fs.Pipeline([one, two, b])


def test_choice_naming_a_missing_asset() -> None:
    @fs.asset
    @router(choice("nowhere", when=lambda deps: True))
    async def pick() -> None: ...

    with pytest.raises(InvalidChoiceError, match="choice 'nowhere' is not in the pipeline"):
        fs.Pipeline([pick])


def test_bad_router_options() -> None:
    with pytest.raises(RoutingDefinitionError, match="on_error"):
        router(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(RoutingDefinitionError, match="callable"):
        choice("a", when="yes")  # type: ignore[arg-type]
    with pytest.raises(RoutingDefinitionError, match="choice"):
        router("a")  # type: ignore[arg-type]
    with pytest.raises(RoutingDefinitionError, match="router"):
        routed_from("")


def test_an_asset_has_one_kind() -> None:
    @fs.asset
    @router()
    async def pick() -> None: ...

    with pytest.raises(fs.InvalidAssetError, match="already a 'router' asset"):
        routed_from("other")(pick)


async def test_result_html_shows_the_path(flowstone_runtime: fs.Runtime) -> None:
    result = await flowstone_runtime.materialize(region_pipeline("grid"))
    html = result._repr_html_()
    assert "by_name" in html and "router &#x27;pick_region&#x27; chose &#x27;by_grid&#x27;" in html


async def test_a_routed_join_is_current_and_the_unchosen_branch_skipped(
    flowstone_runtime: fs.Runtime,
) -> None:
    pipeline = region_pipeline("grid")
    await flowstone_runtime.materialize(pipeline)
    states = await flowstone_runtime.status(pipeline)
    assert {n: s.state for n, s in states.items()} == {
        "query": "current",
        "pick_region": "current",
        "by_grid": "current",
        "by_name": "skipped",  # not chosen: a run now would skip it again
        "grid_detail": "current",
        "region": "current",
    }
    skipped = await flowstone_runtime.materialize(pipeline, "by_name")
    assert skipped.records["by_name"].attempts == 0  # skipped: the function never ran


async def test_a_backfill_of_a_routed_pipeline_skips_current_partitions(
    flowstone_runtime: fs.Runtime,
) -> None:
    calls: list[str] = []
    days = fs.StaticPartitions(["north", "south"])

    @fs.asset(partitions=days)
    async def query(ctx: fs.Context) -> dict[str, Any]:
        calls.append(f"query {ctx.partition}")
        return {"kind": "grid" if ctx.partition == "north" else "name"}

    @fs.asset(partitions=days)
    @router(choice("by_grid", when=lambda deps: deps["query"]["kind"] == "grid"), default="by_name")
    async def pick_region(query: dict[str, Any]) -> None: ...

    @fs.asset(partitions=days)
    @routed_from("pick_region")
    async def by_grid(query: dict[str, Any]) -> str:
        return "grid-cell"

    @fs.asset(partitions=days)
    @routed_from("pick_region")
    async def by_name(query: dict[str, Any]) -> str:
        return "named"

    @fs.asset(partitions=days)
    async def named_detail(by_name: str) -> str:
        return by_name.upper()

    @fs.asset(partitions=days, optional_deps=["by_grid", "by_name"])
    async def region(by_grid: str | None = None, by_name: str | None = None) -> str | None:
        return by_grid or by_name

    pipeline = fs.Pipeline([query, pick_region, by_grid, by_name, named_detail, region])
    first = await flowstone_runtime.backfill(pipeline, partitions=days)
    assert first.ok and sorted(calls) == ["query north", "query south"]
    again = await flowstone_runtime.backfill(pipeline, partitions=days)
    assert {k: o.status for k, o in again.outcomes.items()} == {
        "north": "skipped",
        "south": "skipped",
    }
    assert sorted(calls) == ["query north", "query south"]
    joined = await flowstone_runtime.backfill(pipeline, "region", partitions=days)
    assert {o.status for o in joined.outcomes.values()} == {"skipped"}
