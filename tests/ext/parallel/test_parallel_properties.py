"""Property: for any pattern of branch outcomes, exactly the right assets run, skip or fail.

Branches are made to finish one after another (branch ``i`` starts its work when branch
``i - 1`` has finished, signalled through the ``BranchFinished`` event), so the expected
outcome follows from a sequential model of the failure modes without any timing.
"""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.parallel import Branches, BranchFinished, branch, parallel

Behaviour = str  # "ok" | "fail" | "skip"


class Gates:
    """Sets gate ``i`` when branch ``b{i}`` finishes."""

    def __init__(self, count: int) -> None:
        self.events = [anyio.Event() for _ in range(count)]

    def emit(self, event: object) -> None:
        if isinstance(event, BranchFinished):
            self.events[int(event.branch[1:])].set()


def model(branches: list[tuple[Behaviour, bool]], mode: str) -> tuple[list[str], str]:
    """Each branch's status ("succeeded", "failed", "skipped", "cancelled") and the asset's."""
    statuses: list[str] = []
    verdict: str | None = None
    required = [i for i, (_, req) in enumerate(branches) if req]
    for behaviour, req in branches:
        required_done = bool(required) and all(i < len(statuses) for i in required)
        if verdict is not None or (mode == "partial" and required_done):
            statuses.append("cancelled")
            continue
        statuses.append({"ok": "succeeded", "fail": "failed", "skip": "skipped"}[behaviour])
        tolerant = mode == "partial" and not req
        if behaviour == "fail" and not tolerant:
            verdict = "failed"
        elif behaviour == "skip" and req:
            verdict = "skipped"
    return statuses, verdict or "succeeded"


def branch_assets(
    i: int, behaviour: Behaviour, gates: dict[str, Gates]
) -> list[fs.AssetDef[..., Any]]:
    """``u{i}`` waits for the previous branch; ``f{i}`` (the branch's end) behaves."""

    async def upstream() -> int:
        if i > 0:
            await gates["current"].events[i - 1].wait()
        await anyio.sleep(0)  # a checkpoint: a cancelled branch stops here
        return i

    async def final(value: int) -> int:
        if behaviour == "fail":
            raise ValueError(f"branch {value} failed")
        if behaviour == "skip":
            raise fs.SkipAsset(f"branch {value} skipped")
        return value * 10

    return [
        fs.asset(name=f"u{i}")(upstream),
        fs.asset(name=f"f{i}", deps={"value": f"u{i}"})(final),
    ]


def build(
    branches: list[tuple[Behaviour, bool]], mode: str, gates: dict[str, Gates]
) -> fs.Pipeline:
    assets: list[fs.AssetDef[..., Any]] = []
    for i, (behaviour, _) in enumerate(branches):
        assets.extend(branch_assets(i, behaviour, gates))

    @fs.asset
    @parallel(
        *(branch(f"b{i}", final=f"f{i}", required=req) for i, (_, req) in enumerate(branches)),
        failure_mode=mode,  # type: ignore[arg-type]
    )
    async def gathered(branches: Branches) -> dict[str, Any]:
        return {
            "values": dict(branches),
            "statuses": {n: o.status.value for n, o in branches.outcomes.items()},
        }

    @fs.asset
    async def after(gathered: dict[str, Any]) -> int:
        return len(gathered["values"])

    return fs.Pipeline([*assets, gathered, after])


@settings(max_examples=80, deadline=None)
@given(
    branches=st.lists(
        st.tuples(st.sampled_from(["ok", "fail", "skip"]), st.booleans()), min_size=1, max_size=4
    ),
    mode=st.sampled_from(["all_or_nothing", "partial"]),
)
def test_branch_outcome_patterns(branches: list[tuple[Behaviour, bool]], mode: str) -> None:
    statuses, expected = model(branches, mode)
    gates: dict[str, Gates] = {}

    async def main() -> fs.MaterializeResult:
        gates["current"] = Gates(len(branches))
        pipeline = build(branches, mode, gates)
        async with fs.Runtime(event_sinks=[gates["current"]]) as runtime:
            with anyio.fail_after(10):
                return await runtime.materialize(pipeline, "after", raise_on_error=False)

    result = anyio.run(main)
    outcomes = result.outcomes

    for i, status in enumerate(statuses):
        if status == "cancelled":
            assert outcomes[f"u{i}"].status is fs.Status.SKIPPED
            assert outcomes[f"u{i}"].reason == "cancelled"
            assert f"f{i}" not in outcomes
        else:
            assert outcomes[f"u{i}"].status is fs.Status.SUCCEEDED
            assert outcomes[f"f{i}"].status.value == status

    gathered = outcomes["gathered"]
    assert gathered.status.value == expected
    branch_meta = gathered.record.metadata["branches"] if gathered.record else {}
    recorded = [branch_meta[f"b{i}"]["status"] for i in range(len(branches))]
    assert recorded == [("skipped" if s == "cancelled" else s) for s in statuses]
    if expected == "succeeded":
        assert result["gathered"]["values"] == {
            f"b{i}": i * 10 for i, s in enumerate(statuses) if s == "succeeded"
        }
        assert outcomes["after"].status is fs.Status.SUCCEEDED
    else:
        assert outcomes["after"].status is fs.Status.SKIPPED
    if expected == "failed":
        failed_branch = next(
            f"b{i}"
            for i, ((_, req), s) in enumerate(zip(branches, statuses, strict=True))
            if s == "failed" and (mode == "all_or_nothing" or req)
        )
        assert f"branch {failed_branch!r}" in str(gathered.error)
