"""Parallel assets: concurrency, joins, failure modes, timeouts, records and events."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.ext.parallel import (
    Branches,
    BranchFailedError,
    BranchFinished,
    BranchStarted,
    BranchTimeoutError,
    InProcessParallelCoordinator,
    ParallelSpec,
    ParallelTimeoutError,
    branch,
    parallel,
    parallel_asset,
)


def make_slow(name: str, value: Any, delay: float = 0.2) -> fs.AssetDef[..., Any]:
    async def fn() -> Any:
        await anyio.sleep(delay)
        return value

    return fs.asset(name=name)(fn)


def make_failing(name: str) -> fs.AssetDef[..., Any]:
    async def fn() -> Any:
        raise ValueError(f"{name} broke")

    return fs.asset(name=name)(fn)


class AfterBranch:
    """An event sink that opens once branch ``name`` has finished (to order branches)."""

    def __init__(self, runtime: fs.Runtime, name: str) -> None:
        self.name = name
        self.opened = anyio.Event()
        runtime.add_event_sink(self)

    def emit(self, event: object) -> None:
        if isinstance(event, BranchFinished) and event.branch == self.name:
            self.opened.set()


def make_after(name: str, value: Any, gate: AfterBranch) -> fs.AssetDef[..., Any]:
    """An asset that returns ``value`` once ``gate``'s branch has finished."""

    async def fn() -> Any:
        await gate.opened.wait()
        return value

    return fs.asset(name=name)(fn)


def make_forever(name: str, cancelled: list[str] | None = None) -> fs.AssetDef[..., Any]:
    async def fn() -> Any:
        try:
            await anyio.sleep_forever()
        finally:
            if cancelled is not None:
                cancelled.append(name)

    return fs.asset(name=name)(fn)


async def test_three_branches_run_concurrently(flowstone_runtime: fs.Runtime) -> None:
    one, two, three = make_slow("one", 1), make_slow("two", 2), make_slow("three", 3)

    @fs.asset
    @parallel(branch("one"), branch("two"), branch("three"))
    async def gathered(branches: Branches) -> int:
        return int(sum(branches.values()))

    pipeline = fs.Pipeline([one, two, three, gathered])
    started = time.perf_counter()
    result = await flowstone_runtime.materialize(pipeline, "gathered")
    elapsed = time.perf_counter() - started
    assert result["gathered"] == 6
    assert elapsed < 0.5, f"three 0.2 s branches took {elapsed:.3f} s"


async def test_join_gets_branches_inputs_and_context(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def raw() -> list[int]:
        return [1, 2, 3]

    @fs.asset
    async def maps(raw: list[int]) -> int:
        return sum(raw)

    @fs.asset
    async def news(raw: list[int]) -> int:
        return len(raw)

    @fs.asset
    async def region() -> str:
        return "north"

    seen: dict[str, Any] = {}

    @fs.asset
    @parallel(branch("m", final="maps"), branch("n", final=news))
    async def gathered(ctx: fs.Context, branches: Branches, region: str) -> dict[str, Any]:
        seen["ctx"] = ctx
        seen["branches"] = branches
        return {"maps": branches["m"], "news": branches["n"], "region": region}

    pipeline = fs.Pipeline([raw, maps, news, region, gathered])
    result = await flowstone_runtime.materialize(pipeline, "gathered")
    assert result["gathered"] == {"maps": 6, "news": 3, "region": "north"}
    assert seen["ctx"].asset == "gathered"
    branches = seen["branches"]
    assert dict(branches) == {"m": 6, "n": 3}
    assert set(branches.outcomes) == {"m", "n"}
    assert all(o.status is fs.Status.SUCCEEDED for o in branches.outcomes.values())
    assert all(o.duration is not None and o.duration >= 0 for o in branches.outcomes.values())
    # Upstream shared by both branches ran once, and everything ran in one run.
    assert result.records["raw"].attempts == 1
    assert {"raw", "maps", "news", "region", "gathered"} <= set(result.succeeded)


async def test_decorator_works_on_either_side_of_asset(flowstone_runtime: fs.Runtime) -> None:
    one = make_slow("one", 1, delay=0)

    @parallel(branch("one"))
    @fs.asset
    async def after(branches: Branches) -> int:
        return int(branches["one"]) * 10

    @fs.asset
    @parallel(branch("one"))
    async def before(branches: Branches) -> int:
        return int(branches["one"]) * 100

    assert after.kind == before.kind == "parallel"
    assert "branches" not in after.inputs and "branches" not in before.inputs
    assert after.deps == before.deps == ("one",)
    result = await flowstone_runtime.materialize(fs.Pipeline([one, after, before]))
    assert (result["after"], result["before"]) == (10, 100)


async def test_parallel_asset_without_join(flowstone_runtime: fs.Runtime) -> None:
    one, two = make_after("one", 1, AfterBranch(flowstone_runtime, "b")), make_failing("two")
    gathered = parallel_asset(
        "gathered",
        branch("a", final=one),
        branch("b", final="two", required=False),
        failure_mode="partial",
    )
    assert isinstance(gathered.kind_spec, ParallelSpec)
    assert gathered.description and "'a'" in gathered.description
    result = await flowstone_runtime.materialize(
        fs.Pipeline([one, two, gathered]), "gathered", raise_on_error=False
    )
    assert result["gathered"] == {"a": 1}
    assert result.failed == ("two",)


async def test_parallel_asset_accepts_asset_options(flowstone_runtime: fs.Runtime) -> None:
    one = make_slow("one", 1, delay=0)
    gathered = parallel_asset("gathered", branch("one"), tags={"team": "maps"}, retry=2)
    assert gathered.tags == {"team": "maps"} and gathered.retry.attempts == 2
    result = await flowstone_runtime.materialize(fs.Pipeline([one, gathered]), "gathered")
    assert result["gathered"] == {"one": 1}


async def test_join_without_branches_parameter(flowstone_runtime: fs.Runtime) -> None:
    one = make_slow("one", 1, delay=0)

    @fs.asset
    @parallel(branch("one"))
    async def done() -> str:
        return "all done"

    result = await flowstone_runtime.materialize(fs.Pipeline([one, done]), "done")
    assert result["done"] == "all done"
    assert result.succeeded == ("one", "done") or set(result.succeeded) == {"one", "done"}


async def test_sync_join_runs(flowstone_runtime: fs.Runtime) -> None:
    one = make_slow("one", 1, delay=0)

    @fs.asset
    @parallel(branch("one"))
    def total(branches: Branches) -> int:
        return int(branches["one"]) + 1

    result = await flowstone_runtime.materialize(fs.Pipeline([one, total]), "total")
    assert result["total"] == 2


# -- failure modes ---------------------------------------------------------------------


async def test_all_or_nothing_fails_naming_branch_and_cancels_others(
    flowstone_runtime: fs.Runtime,
) -> None:
    cancelled: list[str] = []
    bad, slow = make_failing("bad"), make_forever("slow", cancelled)
    join_calls: list[Branches] = []

    @fs.asset
    @parallel(branch("broken", final="bad"), branch("waiting", final="slow"))
    async def gathered(branches: Branches) -> None:
        join_calls.append(branches)

    @fs.asset
    async def downstream(gathered: None) -> str:
        return "never"

    pipeline = fs.Pipeline([bad, slow, gathered, downstream])
    result = await flowstone_runtime.materialize(pipeline, "downstream", raise_on_error=False)
    assert not join_calls
    assert cancelled == ["slow"]
    error = result.errors["gathered"]
    assert isinstance(error, BranchFailedError)
    assert error.branch == "broken" and error.final == "bad"
    assert "'broken'" in str(error) and "'bad'" in str(error)
    assert isinstance(error.__cause__, fs.AssetExecutionError)
    assert set(result.failed) == {"bad", "gathered"}
    assert set(result.skipped) == {"slow", "downstream"}
    assert result.outcomes["slow"].reason == "cancelled"
    meta = result.records["gathered"].metadata["branches"]
    assert meta["broken"]["status"] == "failed" and "bad broke" in meta["broken"]["error"]
    assert meta["waiting"]["status"] == "skipped"
    assert meta["waiting"]["reason"] == "cancelled: branch 'broken' failed"


async def test_all_or_nothing_fails_on_an_optional_branch_too(
    flowstone_runtime: fs.Runtime,
) -> None:
    ok, bad = make_slow("ok", 1, delay=0), make_failing("bad")

    @fs.asset
    @parallel(branch("ok"), branch("bad", required=False))
    async def gathered(branches: Branches) -> int:
        return len(branches)

    result = await flowstone_runtime.materialize(
        fs.Pipeline([ok, bad, gathered]), "gathered", raise_on_error=False
    )
    error = result.errors["gathered"]
    assert isinstance(error, BranchFailedError)
    assert error.asset == "gathered" and error.branch == "bad"


async def test_partial_tolerates_failed_optional_branch(flowstone_runtime: fs.Runtime) -> None:
    ok, bad = make_after("ok", 1, AfterBranch(flowstone_runtime, "web")), make_failing("bad")
    seen: list[Branches] = []

    @fs.asset
    @parallel(branch("ok"), branch("web", final="bad", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> dict[str, Any]:
        seen.append(branches)
        return {"ok": branches["ok"], "web": branches.get("web")}

    result = await flowstone_runtime.materialize(
        fs.Pipeline([ok, bad, gathered]), "gathered", raise_on_error=False
    )
    assert result["gathered"] == {"ok": 1, "web": None}
    branches = seen[0]
    assert "web" not in branches and branches.failed == ("web",)
    web = branches.outcomes["web"]
    assert web.status is fs.Status.FAILED and web.required is False
    assert isinstance(web.error, fs.AssetExecutionError)
    with pytest.raises(KeyError, match="branch 'web' has no value: it failed"):
        branches["web"]
    assert result.status is fs.RunStatus.FAILED  # the branch's asset failed in the run


async def test_partial_cancels_pending_optional_branch(flowstone_runtime: fs.Runtime) -> None:
    cancelled: list[str] = []
    ok, slow = make_slow("ok", 1, delay=0.01), make_forever("slow", cancelled)

    @fs.asset
    @parallel(branch("ok"), branch("slow", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> dict[str, Any]:
        return {"values": dict(branches), "skipped": branches.skipped}

    result = await flowstone_runtime.materialize(fs.Pipeline([ok, slow, gathered]), "gathered")
    assert result["gathered"] == {"values": {"ok": 1}, "skipped": ("slow",)}
    assert cancelled == ["slow"]
    assert result.outcomes["slow"].status is fs.Status.SKIPPED
    reason = result.records["gathered"].metadata["branches"]["slow"]["reason"]
    assert reason == "cancelled: the required branches finished"


async def test_partial_fails_on_required_branch(flowstone_runtime: fs.Runtime) -> None:
    bad, opt = make_failing("bad"), make_slow("opt", 1, delay=0)

    @fs.asset
    @parallel(branch("bad"), branch("opt", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> int:
        return 0

    result = await flowstone_runtime.materialize(
        fs.Pipeline([bad, opt, gathered]), "gathered", raise_on_error=False
    )
    assert isinstance(result.errors["gathered"], BranchFailedError)
    assert "branch 'bad' (asset 'bad') failed" in str(result.errors["gathered"])


async def test_partial_without_required_branches_waits_for_all(
    flowstone_runtime: fs.Runtime,
) -> None:
    a, b = make_slow("a", 1, delay=0), make_slow("b", 2, delay=0.05)

    @fs.asset
    @parallel(branch("a", required=False), branch("b", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> dict[str, int]:
        return dict(branches)

    result = await flowstone_runtime.materialize(fs.Pipeline([a, b, gathered]), "gathered")
    assert result["gathered"] == {"a": 1, "b": 2}


async def test_skipped_required_branch_skips_the_asset(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def nothing() -> None:
        raise fs.SkipAsset("no data today")

    ok = make_slow("ok", 1, delay=0)

    @fs.asset
    @parallel(branch("ok"), branch("nothing"))
    async def gathered(branches: Branches) -> int:
        return 1

    result = await flowstone_runtime.materialize(fs.Pipeline([ok, nothing, gathered]), "gathered")
    assert result.outcomes["gathered"].status is fs.Status.SKIPPED
    reason = result.outcomes["gathered"].reason or ""
    assert "required branch 'nothing' was skipped" in reason and "no data today" in reason


async def test_skipped_optional_branch_is_left_out(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def nothing() -> None:
        raise fs.SkipAsset("no data today")

    ok = make_after("ok", 1, AfterBranch(flowstone_runtime, "nothing"))

    @fs.asset
    @parallel(branch("ok"), branch("nothing", required=False))
    async def gathered(branches: Branches) -> dict[str, Any]:
        return {"values": dict(branches), "skipped": branches.skipped}

    result = await flowstone_runtime.materialize(fs.Pipeline([ok, nothing, gathered]), "gathered")
    assert result["gathered"] == {"values": {"ok": 1}, "skipped": ("nothing",)}


# -- timeouts --------------------------------------------------------------------------


async def test_branch_timeout_fails_all_or_nothing(flowstone_runtime: fs.Runtime) -> None:
    ok, stuck = make_slow("ok", 1, delay=0), make_forever("stuck")

    @fs.asset
    @parallel(branch("ok"), branch("stuck", timeout=0.05))
    async def gathered(branches: Branches) -> int:
        return 1

    started = time.perf_counter()
    with pytest.raises(BranchTimeoutError) as caught:
        await flowstone_runtime.materialize(fs.Pipeline([ok, stuck, gathered]), "gathered")
    assert time.perf_counter() - started < 5
    error = caught.value
    assert isinstance(error, TimeoutError) and isinstance(error, BranchFailedError)
    assert error.branch == "stuck" and error.timeout == 0.05
    assert "timed out after 0.05 s" in str(error)
    result = error.result  # type: ignore[attr-defined]
    assert result.outcomes["stuck"].status is fs.Status.SKIPPED  # cancelled, not failed


async def test_optional_branch_timeout_in_partial_mode(flowstone_runtime: fs.Runtime) -> None:
    ok, stuck = make_after("ok", 1, AfterBranch(flowstone_runtime, "stuck")), make_forever("stuck")

    @fs.asset
    @parallel(branch("ok"), branch("stuck", required=False, timeout=0.02), failure_mode="partial")
    async def gathered(branches: Branches) -> dict[str, Any]:
        outcome = branches.outcomes["stuck"]
        return {
            "values": dict(branches),
            "stuck": outcome.status.value,
            "error": str(outcome.error),
        }

    result = await flowstone_runtime.materialize(fs.Pipeline([ok, stuck, gathered]), "gathered")
    assert result["gathered"] == {
        "values": {"ok": 1},
        "stuck": "failed",
        "error": "branch 'stuck' timed out after 0.02 s",
    }


async def test_overall_timeout_fails_with_pending_required(flowstone_runtime: fs.Runtime) -> None:
    ok, stuck = make_slow("ok", 1, delay=0), make_forever("stuck")

    @fs.asset
    @parallel(branch("ok"), branch("stuck"), timeout=0.2)
    async def gathered(branches: Branches) -> int:
        return 1

    with pytest.raises(ParallelTimeoutError) as caught:
        await flowstone_runtime.materialize(fs.Pipeline([ok, stuck, gathered]), "gathered")
    assert caught.value.pending == ("stuck",)
    assert caught.value.timeout == 0.2
    assert "waiting for branches 'stuck'" in str(caught.value)
    result = caught.value.result  # type: ignore[attr-defined]
    meta = result.records["gathered"].metadata["branches"]
    assert meta["ok"]["status"] == "succeeded" and meta["stuck"]["status"] == "failed"


async def test_overall_timeout_skips_pending_optional(flowstone_runtime: fs.Runtime) -> None:
    a, stuck = make_slow("a", 1, delay=0), make_forever("stuck")

    @fs.asset
    @parallel(
        branch("a", required=False),
        branch("stuck", required=False),
        failure_mode="partial",
        timeout=0.2,
    )
    async def gathered(branches: Branches) -> dict[str, Any]:
        return {"values": dict(branches), "reason": branches.outcomes["stuck"].reason}

    result = await flowstone_runtime.materialize(fs.Pipeline([a, stuck, gathered]), "gathered")
    assert result["gathered"] == {
        "values": {"a": 1},
        "reason": "cancelled: the parallel timeout of 0.2 s expired",
    }


async def test_asset_timeout_cancels_branches_and_records_them(
    flowstone_runtime: fs.Runtime,
) -> None:
    stuck = make_forever("stuck")

    @fs.asset(timeout=0.05)
    @parallel(branch("stuck"))
    async def gathered(branches: Branches) -> int:
        return 1

    with pytest.raises(fs.AssetTimeoutError):
        await flowstone_runtime.materialize(fs.Pipeline([stuck, gathered]), "gathered")
    coordinator = flowstone_runtime.coordinators.get("parallel")
    assert isinstance(coordinator, InProcessParallelCoordinator)
    (run,) = await flowstone_runtime.store.list_runs()
    (record,) = await coordinator.branches(run.run_id, "gathered", None)
    assert record.status is fs.Status.SKIPPED and record.ended_at is not None


# -- records, events, nesting, reuse ---------------------------------------------------


async def test_branch_records_are_saved(flowstone_runtime: fs.Runtime) -> None:
    ok, bad = make_after("ok", 1, AfterBranch(flowstone_runtime, "web")), make_failing("bad")

    @fs.asset
    @parallel(branch("ok"), branch("web", final="bad", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> int:
        return 1

    result = await flowstone_runtime.materialize(
        fs.Pipeline([ok, bad, gathered]), "gathered", raise_on_error=False
    )
    coordinator = flowstone_runtime.coordinators.get("parallel")
    assert isinstance(coordinator, InProcessParallelCoordinator)
    records = {r.branch: r for r in await coordinator.branches(result.run_id, "gathered", None)}
    assert set(records) == {"ok", "web"}
    assert records["ok"].status is fs.Status.SUCCEEDED and records["ok"].error is None
    assert records["web"].status is fs.Status.FAILED and records["web"].required is False
    assert records["web"].final == "bad" and "bad broke" in (records["web"].error or "")
    assert all(r.started_at and r.ended_at and r.ended_at >= r.started_at for r in records.values())
    meta = result.records["gathered"].metadata["branches"]
    assert meta["web"]["final"] == "bad" and meta["web"]["required"] is False
    assert isinstance(meta["ok"]["duration"], float)


async def test_branch_events(
    flowstone_runtime: fs.Runtime, flowstone_events: fs.MemoryEventSink
) -> None:
    ok, bad = make_after("ok", 1, AfterBranch(flowstone_runtime, "web")), make_failing("bad")

    @fs.asset
    @parallel(branch("ok"), branch("web", final="bad", required=False), failure_mode="partial")
    async def gathered(branches: Branches) -> int:
        return 1

    result = await flowstone_runtime.materialize(
        fs.Pipeline([ok, bad, gathered]), "gathered", raise_on_error=False
    )
    started = [e for e in flowstone_events.events if isinstance(e, BranchStarted)]
    finished = [e for e in flowstone_events.events if isinstance(e, BranchFinished)]
    assert {e.branch for e in started} == {"ok", "web"}
    assert all(e.asset == "gathered" and e.run_id == result.run_id for e in started + finished)
    by_branch = {e.branch: e for e in finished}
    assert by_branch["ok"].status == "succeeded" and by_branch["ok"].error is None
    assert by_branch["web"].status == "failed" and by_branch["web"].final == "bad"
    assert isinstance(by_branch["web"].error, fs.AssetExecutionError)
    assert by_branch["web"].required is False
    events = flowstone_events.events
    assert events.index(by_branch["ok"]) > events.index(
        next(e for e in started if e.branch == "ok")
    )


async def test_nested_parallel_branch(flowstone_runtime: fs.Runtime) -> None:
    a, b, c = make_slow("a", 1, delay=0), make_slow("b", 2, delay=0), make_slow("c", 3, delay=0)
    inner = parallel_asset("inner", branch("a"), branch("b"))

    @fs.asset
    @parallel(branch("inner"), branch("c"))
    async def outer(branches: Branches) -> dict[str, Any]:
        return dict(branches)

    result = await flowstone_runtime.materialize(fs.Pipeline([a, b, c, inner, outer]), "outer")
    assert result["outer"] == {"inner": {"a": 1, "b": 2}, "c": 3}


async def test_branch_value_reused_from_storage_is_loaded(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []

    @fs.asset
    async def base() -> int:
        calls.append("base")
        return 7

    gathered = parallel_asset("gathered", branch("base"))
    pipeline = fs.Pipeline([base, gathered])
    await flowstone_runtime.materialize(pipeline, "base")
    result = await flowstone_runtime.materialize(pipeline, "gathered")
    assert result["gathered"] == {"base": 7}
    assert calls == ["base"]
    assert result.records["base"].reused


async def test_branch_final_selected_too_runs_once(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []

    @fs.asset
    async def base() -> int:
        calls.append("base")
        await anyio.sleep(0.01)
        return 7

    gathered = parallel_asset("gathered", branch("base"))
    result = await flowstone_runtime.materialize(fs.Pipeline([base, gathered]))
    assert result["gathered"] == {"base": 7} and result["base"] == 7
    assert calls == ["base"]


async def test_partitioned_branches_use_the_run_partition(flowstone_runtime: fs.Runtime) -> None:
    days = fs.StaticPartitions(["mon", "tue"])

    @fs.asset(partitions=days)
    async def daily(ctx: fs.Context) -> str:
        return f"data-{ctx.partition}"

    @fs.asset(partitions=days)
    @parallel(branch("daily"))
    async def gathered(ctx: fs.Context, branches: Branches) -> str:
        return f"{ctx.partition}:{branches['daily']}"

    result = await flowstone_runtime.materialize(fs.Pipeline([daily, gathered]), partition="tue")
    assert result["gathered"] == "tue:data-tue"
    coordinator = flowstone_runtime.coordinators.get("parallel")
    assert isinstance(coordinator, InProcessParallelCoordinator)
    (record,) = await coordinator.branches(result.run_id, "gathered", "tue")
    assert record.partition == "tue"


async def test_graph_shows_branches() -> None:
    one = make_slow("one", 1)
    gathered = parallel_asset("gathered", branch("one"))
    text = fs.Pipeline([one, gathered]).graph()
    assert "gathered [parallel] <- one (branch)" in text


async def test_spec_fingerprint_changes_code_version() -> None:
    one = make_slow("one", 1)
    a = parallel_asset("gathered", branch("one"))
    b = parallel_asset("gathered", branch("one"), failure_mode="partial")
    c = parallel_asset("gathered", branch("one"))
    assert a.code_version == c.code_version != b.code_version
    assert one.code_version


# -- gaps in the core run, shown by minimal cases (they pass once the core handles them) --


async def test_retry_reruns_a_timed_out_branch(flowstone_runtime: fs.Runtime) -> None:
    calls: list[int] = []

    @fs.asset
    async def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "ok"

    @fs.asset(retry=fs.Retry(attempts=2, backoff=0))
    @parallel(branch("flaky", timeout=0.05))
    async def gathered(branches: Branches) -> dict[str, Any]:
        return dict(branches)

    result = await flowstone_runtime.materialize(
        fs.Pipeline([flaky, gathered]), "gathered", raise_on_error=False
    )
    assert result.outcomes["gathered"].status is fs.Status.SUCCEEDED
    assert calls == [1, 1]


async def test_parallel_asset_is_stale_when_a_branch_changes(flowstone_runtime: fs.Runtime) -> None:
    first = fs.asset(name="one")(_returning(1))
    gathered = parallel_asset("gathered", branch("one"))

    @fs.asset
    async def after(gathered: dict[str, int]) -> int:
        return gathered["one"]

    await flowstone_runtime.materialize(fs.Pipeline([first, gathered, after]))
    changed = fs.asset(name="one")(_returning(2))
    result = await flowstone_runtime.materialize(fs.Pipeline([changed, gathered, after]), "after")
    assert result["after"] == 2


def _returning(value: int) -> Any:
    if value == 1:

        async def one() -> int:
            return 1

        return one

    async def two() -> int:
        return 2

    return two
