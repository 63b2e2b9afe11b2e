"""Parallel definitions: decorator options, pipeline checks and the Branches mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.parallel import (
    Branch,
    Branches,
    BranchOutcome,
    ParallelDefinitionError,
    ParallelSpec,
    UnknownBranchError,
    branch,
    parallel,
    parallel_asset,
)


def constant(name: str, value: Any = 1) -> fs.AssetDef[..., Any]:
    async def fn() -> Any:
        return value

    return fs.asset(name=name)(fn)


def test_branch_defaults_and_asset_final() -> None:
    one = constant("one")
    assert branch("one") == Branch(name="one", final="one", required=True, timeout=None)
    assert branch("b", final=one, required=False, timeout=2).final == "one"


# Wrong types on purpose below, hence the ignores.
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: branch(""), "non-empty name"),
        (lambda: branch("b", final=3), "final must be an asset"),  # type: ignore[arg-type]
        (lambda: branch("b", timeout=0), "timeout must be positive"),
        (lambda: branch("b", timeout=-1), "timeout must be positive"),
        (lambda: branch("b", timeout="soon"), "number of seconds"),  # type: ignore[arg-type]
        (lambda: parallel(), "at least one branch"),
        (lambda: parallel(branch("a"), branch("a", final="b")), "two branches are named 'a'"),
        (lambda: parallel("a"), "branch\\(...\\) objects"),  # type: ignore[arg-type]
        (
            lambda: parallel(branch("a"), failure_mode="some"),  # type: ignore[arg-type]
            "failure_mode must be one of",
        ),
        (lambda: parallel(branch("a"), timeout=0), "overall timeout must be positive"),
    ],
)
def test_bad_options(make: Any, message: str) -> None:
    with pytest.raises(ParallelDefinitionError, match=message):
        make()


def test_spec_shape() -> None:
    spec = ParallelSpec(branches=(branch("m", final="maps"), branch("n", final="maps")))
    assert spec.kind == "parallel"
    assert spec.reserved_params == frozenset({"branches"})
    assert spec.owned_deps() == ("maps",)
    assert spec.branch("n").final == "maps"
    with pytest.raises(KeyError):
        spec.branch("x")


def test_unknown_branch_final_is_a_definition_error() -> None:
    gathered = parallel_asset("gathered", branch("maps", final="generate_maps"))
    with pytest.raises(fs.DefinitionError, match="generate_maps"):
        fs.Pipeline([gathered])


def test_validate_names_the_branch() -> None:
    gathered = parallel_asset("gathered", branch("maps", final="generate_maps"))
    other = fs.Pipeline([constant("elsewhere")])
    spec = gathered.kind_spec
    assert isinstance(spec, ParallelSpec)
    with pytest.raises(
        UnknownBranchError, match="branch 'maps' ends at asset 'generate_maps'"
    ) as caught:
        spec.validate(gathered, other)
    assert (caught.value.asset, caught.value.branch, caught.value.final) == (
        "gathered",
        "maps",
        "generate_maps",
    )


def test_join_may_not_take_a_branch_end_as_input() -> None:
    maps = constant("maps")

    @fs.asset
    @parallel(branch("m", final="maps"))
    async def gathered(branches: Branches, maps: int) -> int:
        return maps

    with pytest.raises(ParallelDefinitionError, match="parameter 'maps'.*branches\\['m'\\]"):
        fs.Pipeline([maps, gathered])


def test_branch_ending_at_the_parallel_asset_is_a_cycle() -> None:
    with pytest.raises(fs.DefinitionError):
        fs.Pipeline([parallel_asset("loop", branch("loop"))])


def test_an_asset_has_one_kind() -> None:
    gathered = parallel_asset("gathered", branch("one"))
    with pytest.raises(fs.InvalidAssetError, match="already a 'parallel' asset"):
        parallel(branch("two"))(gathered)


def test_parallel_asset_rejects_unknown_options() -> None:
    with pytest.raises(ParallelDefinitionError, match="unknown asset option"):
        parallel_asset("gathered", branch("one"), colour="blue")


def test_branches_mapping() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    outcomes = {
        "maps": BranchOutcome(
            "maps",
            "generate_maps",
            fs.Status.SUCCEEDED,
            value=[1],
            started_at=start,
            ended_at=start + timedelta(seconds=2),
        ),
        "news": BranchOutcome("news", "front_pages", fs.Status.FAILED, error=ValueError("x")),
        "web": BranchOutcome("web", "kw", fs.Status.SKIPPED, reason="cancelled", required=False),
    }
    branches = Branches(outcomes)
    assert dict(branches) == {"maps": [1]}
    assert len(branches) == 1 and list(branches) == ["maps"]
    assert "maps" in branches and "news" not in branches and object() not in branches
    assert branches.get("web") is None and branches.get("web", "none") == "none"
    assert branches.succeeded == ("maps",)
    assert branches.failed == ("news",) and branches.skipped == ("web",)
    assert branches.outcomes["maps"].duration == 2.0 and branches.outcomes["news"].duration is None
    assert branches.outcomes["maps"].ok and not branches.outcomes["news"].ok
    assert repr(branches) == "Branches(maps=succeeded, news=failed, web=skipped)"
    with pytest.raises(KeyError, match="branch 'news' has no value: it failed: ValueError: x"):
        branches["news"]
    with pytest.raises(KeyError, match="no branch named 'nope'"):
        branches["nope"]
    meta = outcomes["maps"].to_metadata()
    assert meta == {
        "final": "generate_maps",
        "status": "succeeded",
        "required": True,
        "started_at": "2025-01-01T00:00:00+00:00",
        "ended_at": "2025-01-01T00:00:02+00:00",
        "duration": 2.0,
        "error": None,
        "reason": None,
    }
