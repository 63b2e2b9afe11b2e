"""materialize(): execution, reuse, failures, retries, timeouts, partitions, isolation."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.testing import assert_failed, assert_reused, assert_skipped, assert_succeeded


@fs.asset
async def numbers(ctx: fs.Context) -> list[int]:
    return [1, 2, 3, 4, 5]


@fs.asset
def doubled(numbers: list[int]) -> list[int]:
    return [n * 2 for n in numbers]


@fs.asset(retry=fs.Retry(attempts=3), timeout=30)
async def total(ctx: fs.Context, doubled: list[int]) -> int:
    return sum(doubled)


pipeline = fs.Pipeline([numbers, doubled, total])


async def test_the_issue_example() -> None:
    result = await fs.materialize(pipeline, select="total")
    assert result["total"] == 30 and result.ok
    assert result.status is fs.RunStatus.SUCCEEDED
    assert set(result.records) == {"numbers", "doubled", "total"}
    record = result.records["total"]
    assert record.status is fs.Status.SUCCEEDED and record.attempts == 1
    assert record.duration is not None and record.duration >= 0


async def test_sync_assets_run_in_a_worker_thread(flowstone_runtime: fs.Runtime) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    @fs.asset
    def where() -> int:
        seen.append(threading.get_ident())
        return 1

    await flowstone_runtime.materialize([where])
    assert seen and seen[0] != loop_thread


async def test_independent_assets_run_concurrently(flowstone_runtime: fs.Runtime) -> None:
    async def slow() -> int:
        await anyio.sleep(0.2)
        return 1

    assets = [fs.asset(name=f"s{i}")(slow) for i in range(5)]
    started = time.perf_counter()
    await flowstone_runtime.materialize(assets)
    assert time.perf_counter() - started < 0.6


async def test_max_concurrent_bounds_a_run(flowstone_runtime: fs.Runtime) -> None:
    running = peak = 0

    async def work() -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1
        return 1

    assets = [fs.asset(name=f"w{i}")(work) for i in range(12)]
    await flowstone_runtime.materialize(assets, max_concurrent=3)
    assert peak == 3


async def test_upstream_reused_while_current(flowstone_runtime: fs.Runtime) -> None:
    calls: list[str] = []

    @fs.asset
    async def up() -> int:
        calls.append("up")
        return 2

    @fs.asset
    async def down(up: int) -> int:
        calls.append("down")
        return up * 10

    p = fs.Pipeline([up, down])
    first = await flowstone_runtime.materialize(p, "down")
    second = await flowstone_runtime.materialize(p, "down")
    assert calls == ["up", "down", "down"]
    assert_reused(second, "up")
    assert_reused(second, "down", reused=False)
    assert second["down"] == 20 and first["down"] == 20
    forced = await flowstone_runtime.materialize(p, "down", force=True)
    assert calls[-2:] == ["up", "down"]
    assert_reused(forced, "up", reused=False)


async def test_redefined_asset_is_recomputed_with_descendants(
    flowstone_runtime: fs.Runtime,
) -> None:
    calls: list[str] = []

    def define(factor: int) -> fs.Pipeline:
        src = f"async def base():\n    calls.append('base')\n    return {factor}\n"
        namespace: dict[str, Any] = {"calls": calls}
        exec(src, namespace)
        base = fs.asset(namespace["base"])

        @fs.asset
        async def mid(base: int) -> int:
            calls.append("mid")
            return base + 1

        @fs.asset
        async def top(mid: int) -> int:
            calls.append("top")
            return mid * 2

        return fs.Pipeline([base, mid, top])

    await flowstone_runtime.materialize(define(1), "top")
    calls.clear()
    await flowstone_runtime.materialize(define(1), "top")
    assert calls == ["top"]  # base and mid unchanged: reused
    calls.clear()
    result = await flowstone_runtime.materialize(define(5), "top")
    assert calls == ["base", "mid", "top"]
    assert result["top"] == 12


async def test_failure_raises_with_cause_and_skips_downstream(
    flowstone_runtime: fs.Runtime,
) -> None:
    @fs.asset
    async def boom() -> int:
        raise ValueError("bad data")

    @fs.asset
    async def after(boom: int) -> int:
        return boom

    @fs.asset
    async def unrelated() -> int:
        await anyio.sleep(0.01)
        return 7

    p = fs.Pipeline([boom, after, unrelated])
    with pytest.raises(fs.AssetExecutionError) as info:
        await flowstone_runtime.materialize(p)
    error = info.value
    assert (error.asset, error.attempt) == ("boom", 1)
    assert isinstance(error.__cause__, ValueError)
    assert error.run_id
    assert "bad data" in str(error)
    result = error.result  # type: ignore[attr-defined]
    assert_skipped(result, "after")
    assert_succeeded(result, "unrelated", value=7)

    result = await flowstone_runtime.materialize(p, raise_on_error=False)
    assert not result.ok and result.failed == ("boom",)
    assert_failed(result, "boom", ValueError)
    assert result.records["after"].status is fs.Status.SKIPPED
    with pytest.raises(KeyError, match="failed"):
        result["boom"]


async def test_retries_then_success_and_events(
    flowstone_runtime: fs.Runtime, flowstone_events: fs.MemoryEventSink
) -> None:
    attempts: list[int] = []

    @fs.asset(retry=fs.Retry(attempts=3, backoff=0))
    async def flaky(ctx: fs.Context) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return 1

    result = await flowstone_runtime.materialize([flaky])
    assert attempts == [1, 2, 3]
    assert result.records["flaky"].attempts == 3
    kinds = [type(e).__name__ for e in flowstone_events.events]
    assert kinds.count("AssetRetried") == 2
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"


async def test_retry_on_filters_exceptions(flowstone_runtime: fs.Runtime) -> None:
    attempts = 0

    @fs.asset(retry=fs.Retry(attempts=5, backoff=0, retry_on=ConnectionError))
    async def picky() -> int:
        nonlocal attempts
        attempts += 1
        raise KeyError("not retried")

    result = await flowstone_runtime.materialize([picky], raise_on_error=False)
    assert attempts == 1 and result.records["picky"].attempts == 1


async def test_timeout_cancels_the_attempt_and_counts_for_retry(
    flowstone_runtime: fs.Runtime,
) -> None:
    attempts = 0

    @fs.asset(timeout=0.05, retry=fs.Retry(attempts=2, backoff=0))
    async def stuck() -> int:
        nonlocal attempts
        attempts += 1
        await anyio.sleep_forever()
        return 1

    with pytest.raises(fs.AssetTimeoutError, match="timed out after 0.05 s") as info:
        await flowstone_runtime.materialize([stuck])
    assert attempts == 2 and info.value.timeout == 0.05
    assert isinstance(info.value, TimeoutError)


async def test_optional_deps_get_defaults_when_skipped(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def maybe() -> int:
        raise fs.SkipAsset("no data today")

    @fs.asset(optional_deps=["maybe"])
    async def tolerant(maybe: int = 42) -> int:
        return maybe

    @fs.asset
    async def strict(maybe: int) -> int:
        return maybe

    result = await flowstone_runtime.materialize([maybe, tolerant, strict])
    assert result.ok
    assert_skipped(result, "maybe", "strict")
    assert result.outcomes["maybe"].reason == "no data today"
    assert result["tolerant"] == 42


async def test_with_deps_false_loads_inputs_or_fails_clearly(flowstone_runtime: fs.Runtime) -> None:
    with pytest.raises(fs.MissingInputError, match="input 'doubled' is missing"):
        await flowstone_runtime.materialize(pipeline, "total", with_deps=False)
    await flowstone_runtime.materialize(pipeline, "doubled")
    result = await flowstone_runtime.materialize(pipeline, "total", with_deps=False)
    assert list(result.records) == ["total"] and result["total"] == 30


async def test_partitions(flowstone_runtime: fs.Runtime) -> None:
    days = fs.DailyPartitions(start="2025-01-01", end="2025-02-01")

    @fs.asset(partitions=days)
    async def daily(ctx: fs.Context) -> str:
        return f"data for {ctx.partition}"

    @fs.asset
    async def config() -> int:
        return 3

    @fs.asset(partitions=days)
    async def summary(daily: str, config: int) -> str:
        return f"{daily} x{config}"

    p = fs.Pipeline([daily, config, summary])
    result = await flowstone_runtime.materialize(p, partition="2025-01-02")
    assert result["summary"] == "data for 2025-01-02 x3"
    assert result.records["summary"].partition == "2025-01-02"
    assert result.records["config"].partition is None
    assert await flowstone_runtime.load(daily, "2025-01-02") == "data for 2025-01-02"
    with pytest.raises(fs.PartitionError, match="'daily'"):
        await flowstone_runtime.materialize(p, partition="2030-01-01")
    with pytest.raises(fs.PartitionError, match="pass partition="):
        await flowstone_runtime.materialize(p)


async def test_backfill_counts_and_keeps_going(flowstone_runtime: fs.Runtime) -> None:
    days = fs.DailyPartitions(start="2025-01-01", end="2025-01-06")

    @fs.asset(partitions=days)
    async def daily(ctx: fs.Context) -> str:
        if ctx.partition == "2025-01-03":
            raise RuntimeError("corrupt day")
        return ctx.partition or ""

    result = await flowstone_runtime.backfill([daily], partitions=days, max_concurrent=2)
    assert (result.succeeded, result.failed, result.skipped) == (4, 1, 0)
    assert result.outcomes["2025-01-03"].status == "failed"
    again = await flowstone_runtime.backfill([daily], partitions=days)
    assert (again.succeeded, again.failed, again.skipped) == (0, 1, 4)


async def test_resume_by_run_id_does_not_redo_finished_assets(
    flowstone_runtime: fs.Runtime,
) -> None:
    calls: list[str] = []
    fail = True

    @fs.asset
    async def first() -> int:
        calls.append("first")
        return 1

    @fs.asset
    async def second(first: int) -> int:
        calls.append("second")
        if fail:
            raise RuntimeError("crash")
        return first + 1

    p = fs.Pipeline([first, second], name="resumable")
    result = await flowstone_runtime.materialize(p, run_id="nightly", raise_on_error=False)
    assert not result.ok
    fail = False
    resumed = await flowstone_runtime.resume("nightly")
    assert resumed.ok and resumed.resumed and resumed["second"] == 2
    assert calls == ["first", "second", "second"]


async def test_resources_plain_and_context_managers() -> None:
    log: list[str] = []

    class Client:
        async def __aenter__(self) -> Client:
            log.append("open")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append("close")

    @fs.asset
    async def uses(ctx: fs.Context) -> str:
        return f"{type(ctx.resources.client).__name__}:{ctx.resources.token}"

    async with fs.Runtime(resources={"client": Client(), "token": "abc"}) as rt:
        assert log == ["open"]
        result = await rt.materialize([uses])
        assert result["uses"] == "Client:abc"
        result = await rt.materialize([uses], resources={"token": "per-call"})
        assert result["uses"] == "Client:per-call"
    assert log == ["open", "close"]
    with pytest.raises(fs.RuntimeStateError, match="cannot reopen"):
        await rt.materialize([uses])


async def test_missing_resource_names_available() -> None:
    @fs.asset
    async def needs(ctx: fs.Context) -> int:
        return ctx.resources.db  # type: ignore[no-any-return]

    with pytest.raises(fs.AssetExecutionError) as info:
        await fs.materialize([needs], resources={"cache": 1})
    assert "no resource named 'db' (available: cache)" in str(info.value.__cause__)


async def test_concurrent_runs_are_isolated() -> None:
    @fs.asset(partitions=fs.StaticPartitions([str(i) for i in range(100)]))
    async def echo(ctx: fs.Context) -> tuple[str | None, Any]:
        await anyio.sleep(0.001)
        assert fs.current_context() is ctx
        return ctx.partition, ctx.resources.tag

    results: dict[int, fs.MaterializeResult] = {}

    async def one(i: int) -> None:
        results[i] = await fs.materialize([echo], partition=str(i), resources={"tag": i})

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(one, i)
    for i, result in results.items():
        assert result["echo"] == (str(i), i)
    assert len({r.run_id for r in results.values()}) == 100


async def test_status_exists_load_invalidate(flowstone_runtime: fs.Runtime) -> None:
    states = await flowstone_runtime.status(pipeline)
    assert {s.state for s in states.values()} == {"missing"}
    await flowstone_runtime.materialize(pipeline)
    states = await flowstone_runtime.status(pipeline)
    assert all(s.current for s in states.values())
    assert await flowstone_runtime.exists("total")
    assert await flowstone_runtime.load(total) == 30
    invalidated = await flowstone_runtime.invalidate("doubled", downstream=pipeline)
    assert invalidated == ["doubled", "total"]
    states = await flowstone_runtime.status(pipeline)
    assert states["numbers"].current and states["doubled"].state == "stale"  # still stored
    with pytest.raises(fs.ValueNotFoundError, match="'ghost'"):
        await flowstone_runtime.load("ghost")


def test_materialize_sync_outside_and_inside_a_loop() -> None:
    result = fs.materialize_sync(pipeline, "total")
    assert result["total"] == 30

    async def inside() -> None:
        with pytest.raises(fs.RuntimeStateError, match="await fs.materialize"):
            fs.materialize_sync(pipeline)

    anyio.run(inside)


async def test_cancellation_propagates_and_records(flowstone_runtime: fs.Runtime) -> None:
    started = anyio.Event()

    @fs.asset
    async def forever() -> int:
        started.set()
        await anyio.sleep_forever()
        return 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(flowstone_runtime.materialize, [forever], None)
        await started.wait()
        tg.cancel_scope.cancel()
    runs = await flowstone_runtime.store.list_runs()
    assert runs[0].status is fs.RunStatus.CANCELLED


@settings(max_examples=25)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=8))
def test_retry_attempt_counts(failures: list[int]) -> None:
    """Each asset fails `k` times then succeeds; with attempts=3 exactly those with k<3 succeed."""

    async def main() -> None:
        assets = []

        def make(i: int, k: int) -> fs.AssetDef[..., int]:
            async def fn(ctx: fs.Context) -> int:
                if ctx.attempt <= k:
                    raise RuntimeError(f"fail {ctx.attempt}")
                return ctx.attempt

            return fs.asset(name=f"a{i}", retry=fs.Retry(attempts=3, backoff=0))(fn)

        for i, k in enumerate(failures):
            assets.append(make(i, k))
        async with fs.Runtime() as rt:
            result = await rt.materialize(assets, raise_on_error=False)
        for i, k in enumerate(failures):
            record = result.records[f"a{i}"]
            if k < 3:
                assert record.ok and record.attempts == k + 1
            else:
                assert record.status is fs.Status.FAILED and record.attempts == 3

    anyio.run(main)


@settings(max_examples=30)
@given(
    st.lists(st.lists(st.integers(min_value=0, max_value=20), max_size=3), min_size=1, max_size=20),
    st.integers(min_value=1, max_value=4),
)
def test_every_asset_starts_after_its_dependencies_finish(raw: list[list[int]], limit: int) -> None:
    """Random DAGs: execution order respects dependencies; every asset runs exactly once."""
    deps = {f"n{i}": sorted({f"n{d % i}" for d in ds}) if i else [] for i, ds in enumerate(raw)}
    log: list[tuple[str, str]] = []

    def make(name: str) -> fs.AssetDef[..., int]:
        async def fn() -> int:
            log.append(("start", name))
            await anyio.sleep(0)
            log.append(("end", name))
            return 1

        return fs.asset(name=name, deps=deps[name])(fn)

    async def main() -> None:
        async with fs.Runtime() as rt:
            result = await rt.materialize([make(n) for n in deps], max_concurrent=limit)
        assert result.ok

    anyio.run(main)
    position = {event: i for i, event in enumerate(log)}
    assert len(log) == 2 * len(deps)
    for name, upstream in deps.items():
        for dep in upstream:
            assert position["end", dep] < position["start", name]


class _BrokenStore(fs.MemoryStore):
    """Refuses to save terminal records (or only succeeded ones) of the assets it names."""

    def __init__(self, *broken: str, only_succeeded: bool = False) -> None:
        super().__init__()
        self.broken = set(broken)
        self.only_succeeded = only_succeeded

    async def save_record(self, record: fs.MaterializationRecord) -> None:
        refused = record.status is fs.Status.SUCCEEDED or (
            record.status.terminal and not self.only_succeeded
        )
        if record.asset in self.broken and refused:
            raise fs.StorageError(f"could not save the record of asset {record.asset!r}")
        await super().save_record(record)


async def test_an_asset_whose_succeeded_record_is_refused_fails() -> None:
    @fs.asset
    def left() -> int:
        return 1

    @fs.asset
    def after(left: int) -> int:
        return left + 1

    async with fs.Runtime(store=_BrokenStore("left", only_succeeded=True)) as runtime:
        result = await runtime.materialize([left, after], raise_on_error=False)
        assert result.status is fs.RunStatus.FAILED
        error = result.outcomes["left"].error
        assert isinstance(error, fs.AssetExecutionError) and error.asset == "left"
        assert isinstance(error.__cause__, fs.StorageError)
        assert result.outcomes["after"].status is fs.Status.SKIPPED
        records = await runtime.store.get_records(result.run_id)
        assert {r.asset: r.status for r in records} == {
            "left": fs.Status.FAILED,
            "after": fs.Status.SKIPPED,
        }


async def test_a_store_failure_reaches_the_caller_as_itself() -> None:
    @fs.asset
    def left() -> int:
        return 1

    @fs.asset
    def right() -> int:
        return 2

    async with fs.Runtime(store=_BrokenStore("left", "right")) as runtime:
        with pytest.raises(fs.StorageError, match="could not save") as caught:
            await runtime.materialize([left, right])
    assert "1 more error came with it" in "".join(getattr(caught.value, "__notes__", []))
    async with fs.Runtime(store=_BrokenStore("left")) as runtime:
        with pytest.raises(fs.StorageError, match="asset 'left'") as caught:
            await runtime.materialize([left, right])
    assert not getattr(caught.value, "__notes__", [])
