"""Scatter assets in pipelines: sources, context, records, events, errors, pinning."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    Batch,
    DuplicateScatterKeyError,
    InProcessScatterCoordinator,
    ScatterFailureThresholdExceeded,
    ScatterFinished,
    ScatterItemFinished,
    ScatterProgress,
    ScatterSpec,
    ScatterStarted,
    scatter,
)
from flowstone.protocols import Invocation, ItemPage


@fs.asset
def orders() -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "total": i} for i in range(12)]


async def test_items_from_a_dependency_read_by_name() -> None:
    @fs.asset
    @scatter(items=lambda deps: deps["orders"], key=lambda o: o["id"], max_concurrent=3)
    async def enriched(ctx: fs.Context, item: dict[str, Any]) -> dict[str, Any]:
        return {"key": ctx.scatter_key, "double": item["total"] * 2}

    assert "orders" in enriched.deps
    result = await fs.materialize([orders, enriched])
    assert result["enriched"] == [{"key": f"o{i}", "double": i * 2} for i in range(12)]
    summary = result.records["enriched"].metadata["scatter"]
    assert summary["total"] == 12
    assert summary["succeeded"] == 12
    assert summary["failed"] == 0
    assert summary["failures"] == []


async def test_decorator_order_does_not_matter() -> None:
    @scatter(items=lambda deps: deps["orders"], max_concurrent=2)
    @fs.asset
    async def totals(item: dict[str, Any]) -> int:
        return int(item["total"])

    assert totals.kind == "scatter"
    result = await fs.materialize([orders, totals])
    assert result["totals"] == list(range(12))


async def test_dependencies_as_parameters_and_context() -> None:
    @fs.asset
    def factor() -> int:
        return 10

    @fs.asset
    @scatter(items=lambda deps: range(deps["factor"]), max_concurrent=4)
    async def scaled(ctx: fs.Context, item: int, factor: int) -> tuple[str | None, int, str | None]:
        current = fs.current_context()
        return ctx.scatter_key, item * factor, current.scatter_key

    result = await fs.materialize([factor, scaled])
    assert result["scaled"] == [(str(i), i * 10, str(i)) for i in range(10)]


async def test_sync_item_function() -> None:
    @fs.asset
    @scatter(items=lambda deps: [1, 2, 3], max_concurrent=2)
    def plus_one(ctx: fs.Context, item: int) -> tuple[int, str | None]:
        return item + 1, ctx.scatter_key

    result = await fs.materialize([plus_one])
    assert result["plus_one"] == [(2, "0"), (3, "1"), (4, "2")]


async def test_declared_ordering_dependency_reaches_items() -> None:
    @fs.asset
    def numbers() -> list[int]:
        return [3, 1, 2]

    def pick(deps: Any) -> Any:  # read with a variable: not found in the code
        name = "numbers"
        return deps[name]

    @fs.asset(deps=["numbers"])
    @scatter(items=pick, max_concurrent=2)
    async def squared(item: int) -> int:
        return item * item

    result = await fs.materialize([numbers, squared])
    assert result["squared"] == [9, 1, 4]


async def test_async_generator_items() -> None:
    async def stream(deps: Any) -> AsyncIterator[int]:
        for i in range(5):
            await anyio.lowlevel.checkpoint()
            yield i

    @fs.asset
    @scatter(items=stream, max_concurrent=2)
    async def doubled(item: int) -> int:
        return item * 2

    result = await fs.materialize([doubled])
    assert result["doubled"] == [0, 2, 4, 6, 8]


class PagedReader:
    """An ItemReader over ``range(n)`` with cursors ``"<offset>"``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cursors: list[str | None] = []

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
        self.cursors.append(cursor)
        start = int(cursor) if cursor else 0
        end = min(self.n, start + limit)
        return ItemPage(list(range(start, end)), str(end) if end < self.n else None)

    async def count(self) -> int | None:
        return self.n


async def test_reader_instance_and_registered_name() -> None:
    reader = PagedReader(25)

    @fs.asset
    @scatter(reader=reader, max_concurrent=3, page_size=10)
    async def from_instance(item: int) -> int:
        return item

    @fs.asset
    @scatter(reader="numbers", max_concurrent=3, page_size=10)
    async def from_name(item: int) -> int:
        return -item

    async with fs.Runtime(item_readers={"numbers": PagedReader(5)}) as runtime:
        result = await runtime.materialize([from_instance, from_name])
    assert result["from_instance"] == list(range(25))
    assert result["from_name"] == [0, -1, -2, -3, -4]
    assert reader.cursors == [None, "10", "20"]


async def test_failed_items_listed_in_the_record() -> None:
    @fs.asset
    @scatter(
        items=lambda deps: range(20),
        max_concurrent=4,
        tolerated_failure=0.1,
        retry=fs.Retry(attempts=2, backoff=0),
    )
    async def mostly(item: int) -> int:
        if item in (4, 9):
            raise ValueError(f"item {item} is bad")
        return item

    result = await fs.materialize([mostly])
    assert result["mostly"] == [i for i in range(20) if i not in (4, 9)]
    summary = result.records["mostly"].metadata["scatter"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (20, 18, 2)
    assert summary["retried"] == 2
    assert summary["failures"] == [
        {"key": "4", "error": "ValueError: item 4 is bad"},
        {"key": "9", "error": "ValueError: item 9 is bad"},
    ]


async def test_threshold_exceeded_fails_the_asset() -> None:
    @fs.asset
    @scatter(items=lambda deps: range(10), max_concurrent=2, tolerated_failure=1)
    async def fragile(item: int) -> int:
        if item >= 5:
            raise ValueError("broken")
        return item

    @fs.asset
    def downstream(fragile: list[int]) -> int:
        return len(fragile)

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await fs.materialize([fragile, downstream])
    error = caught.value
    assert error.asset == "fragile"
    assert error.failed == 2 and error.succeeded == 5 and error.total == 10
    result = await fs.materialize([fragile, downstream], raise_on_error=False)
    assert result.status is fs.RunStatus.FAILED
    assert "downstream" in result.skipped
    record = result.records["fragile"]
    assert record.error_type == "ScatterFailureThresholdExceeded"
    assert record.metadata["scatter"]["failed"] == 2


async def test_duplicate_keys_fail_naming_the_key() -> None:
    @fs.asset
    @scatter(items=lambda deps: [{"id": 1}, {"id": 2}, {"id": 1}], key=lambda o: str(o["id"]))
    async def keyed(item: dict[str, int]) -> int:
        return item["id"]

    with pytest.raises(fs.AssetExecutionError, match="duplicate scatter key '1'") as caught:
        await fs.materialize([keyed])
    assert isinstance(caught.value.__cause__, DuplicateScatterKeyError)
    assert caught.value.__cause__.key == "1"


async def test_events_go_to_the_sinks() -> None:
    sink = fs.MemoryEventSink()

    @fs.asset
    @scatter(items=lambda deps: range(6), max_concurrent=2, tolerated_failure=1)
    async def watched(item: int) -> int:
        if item == 3:
            raise ValueError("three")
        return item

    async with fs.Runtime(event_sinks=[sink]) as runtime:
        await runtime.materialize([watched])
    started = sink.of_type(ScatterStarted)
    assert len(started) == 1 and started[0].total == 6  # type: ignore[attr-defined]
    items = sink.of_type(ScatterItemFinished)
    assert sorted(e.key for e in items) == [str(i) for i in range(6)]  # type: ignore[attr-defined]
    failed = [e for e in items if e.status is fs.Status.FAILED]  # type: ignore[attr-defined]
    assert [(e.key, e.error) for e in failed] == [("3", "ValueError: three")]  # type: ignore[attr-defined]
    progress = sink.of_type(ScatterProgress)
    assert progress and progress[-1].done == 6 and progress[-1].failed == 1  # type: ignore[attr-defined]
    (finished,) = sink.of_type(ScatterFinished)
    assert finished.status == "succeeded"  # type: ignore[attr-defined]
    assert (finished.succeeded, finished.failed) == (5, 1)  # type: ignore[attr-defined]


class CoarseSink(fs.MemoryEventSink):
    """A sink that says it takes no per-item events."""

    item_events = False


async def test_per_item_events_are_built_only_for_a_sink_that_takes_them() -> None:
    coarse = CoarseSink()

    @fs.asset
    @scatter(items=lambda deps: range(4))
    async def counted(item: int) -> int:
        return item

    async with fs.Runtime(event_sinks=[coarse]) as runtime:
        assert runtime.has_sinks and not runtime.has_item_sinks
        await runtime.materialize([counted])
        everything = fs.MemoryEventSink()
        runtime.add_event_sink(everything)
        assert runtime.has_item_sinks
        await runtime.materialize([counted], run_id="again")
    assert coarse.of_type(ScatterFinished) and len(coarse.of_type(ScatterFinished)) == 2
    assert len(coarse.of_type(ScatterItemFinished)) == 4  # only while the other sink was on
    assert len(everything.of_type(ScatterItemFinished)) == 4


async def test_the_logging_sink_logs_failed_items(caplog: pytest.LogCaptureFixture) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(4), tolerated_failure=1)
    async def logged(item: int) -> int:
        if item == 2:
            raise ValueError("two")
        return item

    with caplog.at_level(logging.WARNING, logger="flowstone"):
        async with fs.Runtime(event_sinks=[fs.LoggingSink()]) as runtime:
            await runtime.materialize([logged])
    (line,) = [r for r in caplog.records if "item" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert (
        line.getMessage() == "asset logged item '2' (#2) failed after 1 attempt(s): ValueError: two"
    )


async def test_no_item_events_without_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    original = ScatterItemFinished.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ScatterItemFinished, "__init__", spy)

    @fs.asset
    @scatter(items=lambda deps: range(50), max_concurrent=5)
    async def quiet(item: int) -> int:
        return item

    async with fs.Runtime() as runtime:
        await runtime.materialize([quiet])
    assert built == []


async def test_batches_in_a_pipeline() -> None:
    seen: list[tuple[int | None, int | None, Any, list[int]]] = []

    @fs.asset
    @scatter(
        items=lambda deps: range(7),
        batch=Batch(max_items=3, batch_input=lambda deps: {"n": len(deps)}),
        max_concurrent=2,
    )
    async def batched(ctx: fs.Context, item: list[int]) -> list[int]:
        seen.append((ctx.batch_index, ctx.batch_count, ctx.batch_input, item))
        return [x * 10 for x in item]

    result = await fs.materialize([batched])
    assert result["batched"] == [x * 10 for x in range(7)]
    assert sorted(seen) == [
        (0, 3, {"n": 0}, [0, 1, 2]),
        (1, 3, {"n": 0}, [3, 4, 5]),
        (2, 3, {"n": 0}, [6]),
    ]
    assert result.records["batched"].metadata["scatter"]["succeeded"] == 7


async def test_pinned_coordinator() -> None:
    calls: list[str] = []

    class Recording(InProcessScatterCoordinator):
        async def execute(self, invocation: Invocation) -> Any:
            calls.append(invocation.asset.name)
            return await super().execute(invocation)

    @fs.asset
    @scatter(items=lambda deps: [1, 2], coordinator="special")
    async def pinned(item: int) -> int:
        return item

    @fs.asset
    @scatter(items=lambda deps: [3], coordinator="missing")
    async def lost(item: int) -> int:
        return item

    async with fs.Runtime(coordinators={"special": Recording()}) as runtime:
        result = await runtime.materialize([pinned])
        assert result["pinned"] == [1, 2]
        assert calls == ["pinned"]
        with pytest.raises(fs.AssetExecutionError) as caught:
            await runtime.materialize([lost])
    assert isinstance(caught.value.__cause__, fs.PluginNotFoundError)


async def test_run_cancellation_cancels_the_items() -> None:
    started = 0
    cancelled = 0
    all_started = anyio.Event()

    @fs.asset
    @scatter(items=lambda deps: range(100), max_concurrent=5)
    async def endless(item: int) -> int:
        nonlocal started, cancelled
        started += 1
        if started == 5:
            all_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled += 1
            raise
        return item

    import asyncio

    before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        tg.start_soon(fs.materialize, [endless])
        await all_started.wait()
        tg.cancel_scope.cancel()
    assert (started, cancelled) == (5, 5)
    assert asyncio.all_tasks() == before


async def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(30), max_concurrent=3, progress=True)
    async def shown(item: int) -> int:
        return item

    result = await fs.materialize([shown])
    assert result["shown"] == list(range(30))
    assert "30/30" in capsys.readouterr().err


def test_progress_without_tqdm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(fs.MissingExtraError, match=r"flowstone\[progress\]"):

        @scatter(items=lambda deps: [1], progress=True)
        async def shown(item: int) -> int:
            return item


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "exactly one source"),
        ({"items": lambda d: [1], "reader": "x"}, "exactly one source"),
        ({"items": [1, 2]}, "items= must be a callable"),
        ({"reader": 42}, "reader="),
        ({"items": lambda d: [1], "max_concurrent": 0}, "max_concurrent"),
        ({"items": lambda d: [1], "tolerated_failure": 2.5}, "tolerated_failure"),
        ({"items": lambda d: [1], "timeout": -1}, "timeout"),
        ({"items": lambda d: [1], "rate": "fast"}, "rate"),
        ({"items": lambda d: [1], "batch": {"max_items": 2}}, "batch="),
        ({"items": lambda d: [1], "gather": 3}, "gather="),
        ({"items": lambda d: [1], "coordinator": ""}, "coordinator="),
        ({"items": lambda d: [1], "key": "id"}, "key="),
    ],
)
def test_invalid_options_fail_at_decoration(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(fs.InvalidAssetError, match=fragment) as caught:

        @scatter(**options)
        async def broken(item: int) -> int:
            return item

    assert caught.value.asset == "broken"


def test_function_needs_an_item_parameter() -> None:
    with pytest.raises(fs.InvalidAssetError, match="'item'"):

        @fs.asset
        @scatter(items=lambda deps: [1])
        async def no_item(ctx: fs.Context, value: int) -> int:
            return value


def test_spec_and_fingerprint() -> None:
    @fs.asset
    @scatter(items=lambda deps: deps["orders"], max_concurrent=3, retry=2)
    async def spec_holder(item: int) -> int:
        return item

    spec = spec_holder.kind_spec
    assert isinstance(spec, ScatterSpec)
    assert spec.kind == "scatter" and spec.reserved_params == frozenset({"item"})
    assert spec.retry == fs.Retry(attempts=2)
    assert spec.item_deps == ("orders",)
    assert "0x" not in spec.fingerprint()  # no memory addresses: stable across processes
    assert "items" not in spec_holder.inputs

    @fs.asset(name="spec_holder")
    @scatter(items=lambda deps: deps["orders"], max_concurrent=30, retry=2)
    async def same_but_wider(item: int) -> int:
        return item

    assert same_but_wider.code_version == spec_holder.code_version  # limits do not version


async def test_failed_scatter_events_and_summary() -> None:
    sink = fs.MemoryEventSink()

    async def total(results: AsyncIterator[tuple[str, int]]) -> int:
        return sum([value async for _, value in results])

    @fs.asset
    @scatter(items=lambda deps: range(100), max_concurrent=3, gather=total)
    async def summed(item: int) -> int:
        if item == 10:
            raise ValueError("ten")
        await anyio.lowlevel.checkpoint()
        return item

    async with fs.Runtime(event_sinks=[sink]) as runtime:
        result = await runtime.materialize([summed], raise_on_error=False)
    assert result.failed == ("summed",)
    (finished,) = sink.of_type(ScatterFinished)
    assert finished.status == "failed"  # type: ignore[attr-defined]
    summary = result.records["summed"].metadata["scatter"]
    assert summary["failed"] == 1 and summary["failures"][0]["key"] == "10"


async def test_stored_dependency_is_loaded_for_items() -> None:
    @fs.asset
    def seeds() -> list[int]:
        return [5, 6]

    @fs.asset
    @scatter(items=lambda deps: deps["seeds"], max_concurrent=2)
    async def grown(item: int) -> int:
        return item + 1

    async with fs.Runtime() as runtime:
        await runtime.materialize([seeds])
        result = await runtime.materialize([seeds, grown], select="grown", with_deps=False)
        assert result["grown"] == [6, 7]
        again = await runtime.materialize([seeds, grown], select="grown")  # seeds reused
        assert again["grown"] == [6, 7]
