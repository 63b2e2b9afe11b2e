"""Property: whatever a router decides, exactly the chosen path runs and the rest is skipped."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.routing import choice, routed_from, router

RAISE = -2
NONE = -1


def decide(target: int, i: int) -> bool:
    if target == RAISE:
        raise RuntimeError("cannot decide")
    return target == i


def routed_asset(i: int) -> fs.AssetDef[..., Any]:
    async def route(src: int) -> str:
        return f"value-{i}"

    return routed_from("pick")(fs.asset(name=f"r{i}")(route))


def child_asset(i: int) -> fs.AssetDef[..., Any]:
    async def child(parent: str) -> str:
        return parent.upper()

    return fs.asset(name=f"c{i}", deps={"parent": f"r{i}"})(child)


def predicate(i: int) -> Any:
    return lambda deps: decide(deps["src"], i)


@fs.asset(optional_deps=["r0", "r1", "r2"])
async def join(r0: str | None = None, r1: str | None = None, r2: str | None = None) -> list[str]:
    """Takes every route as an optional input (absent ones too), so it always runs."""
    return [v for v in (r0, r1, r2) if v is not None]


def build(
    routes: int, target: int, declarative: bool, default: int | None, on_error: str
) -> fs.Pipeline:
    names = [f"r{i}" for i in range(routes)]
    default_name = None if default is None else names[default]

    @fs.asset
    async def src() -> int:
        return target

    if declarative:
        choices = [choice(n, when=predicate(i)) for i, n in enumerate(names)]

        @fs.asset
        @router(*choices, default=default_name, on_error=on_error)  # type: ignore[arg-type]
        async def pick(src: int) -> None: ...

    else:

        @fs.asset
        @router(default=default_name, on_error=on_error)  # type: ignore[arg-type]
        async def pick(src: int) -> str | None:
            if src == RAISE:
                raise RuntimeError("cannot decide")
            return None if src == NONE else names[src]

    assets: list[fs.AssetDef[..., Any]] = [src, pick, join]
    for i in range(routes):
        assets += [routed_asset(i), child_asset(i)]
    return fs.Pipeline(assets)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, bool, int | None, str]:
    routes = draw(st.integers(1, 3))
    target = draw(st.sampled_from([RAISE, NONE, *range(routes)]))
    default = draw(st.none() | st.integers(0, routes - 1))
    return routes, target, draw(st.booleans()), default, draw(st.sampled_from(["fail", "default"]))


@settings(max_examples=80, deadline=None)
@given(scenario=scenarios())
def test_exactly_the_chosen_path_runs(scenario: tuple[int, int, bool, int | None, str]) -> None:
    routes, target, declarative, default, on_error = scenario
    pipeline = build(*scenario)

    async def main() -> fs.MaterializeResult:
        async with fs.Runtime() as runtime:
            return await runtime.materialize(pipeline, raise_on_error=False)

    result = anyio.run(main)
    router_fails = target == RAISE and on_error == "fail"
    if target == RAISE:
        chosen = default
    elif target == NONE:
        chosen = default if declarative else None
    else:
        chosen = target

    statuses = {name: outcome.status for name, outcome in result.outcomes.items()}
    assert statuses["src"] is fs.Status.SUCCEEDED
    assert statuses["join"] is fs.Status.SUCCEEDED
    if router_fails:
        assert statuses["pick"] is fs.Status.FAILED
        ran: set[int] = set()
    else:
        assert statuses["pick"] is fs.Status.SUCCEEDED
        assert result["pick"] == (None if chosen is None else f"r{chosen}")
        ran = set() if chosen is None else {chosen}
    for i in range(routes):
        expected = fs.Status.SUCCEEDED if i in ran else fs.Status.SKIPPED
        assert statuses[f"r{i}"] is expected, (i, statuses)
        assert statuses[f"c{i}"] is expected, (i, statuses)
    assert result["join"] == [f"value-{i}" for i in sorted(ran)]
    assert set(result.failed) == ({"pick"} if router_fails else set())
