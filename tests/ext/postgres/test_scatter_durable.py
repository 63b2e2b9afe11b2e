"""The durable scatter coordinator in one process: results, order, threshold, summary,
events, gather, batching, readers, resume, storage rules, the barrier API, workers in code."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg
import pytest

import flowstone as fs
from flowstone.ext.postgres import PostgresStore, _scatter_source
from flowstone.ext.postgres._migrations import load_migrations
from flowstone.ext.postgres._scatter import (
    BarrierCancelledError,
    PostgresScatterCoordinator,
    barrier_key,
)
from flowstone.ext.postgres._scatter_sql import ScatterQueries
from flowstone.ext.postgres._worker import ScatterWorker, run_worker
from flowstone.ext.scatter import (
    Batch,
    DuplicateScatterKeyError,
    ScatterFailureThresholdExceeded,
    ScatterFinished,
    ScatterItemFinished,
    ScatterProgress,
    ScatterStarted,
    scatter,
)
from flowstone.protocols import ItemPage, ScatterItemResult

pytestmark = pytest.mark.postgres


def durable_runtime(coordinator: PostgresScatterCoordinator, **options: Any) -> fs.Runtime:
    """A runtime whose ``scatter`` coordinator is ``coordinator`` (registered after the
    store's own install, so that it wins whatever the store registers)."""
    runtime = fs.Runtime(**options)
    runtime.coordinators.register("scatter", coordinator)
    return runtime


@pytest.fixture
async def durable(pg_store: PostgresStore) -> AsyncIterator[fs.Runtime]:
    """A runtime whose scatter coordinator is the durable one."""
    coordinator = PostgresScatterCoordinator(pg_store, lease=2)
    async with durable_runtime(coordinator, store=pg_store) as runtime:
        yield runtime


def barrier_sql(schema: str, columns: str = "status, total, succeeded, failed") -> str:
    """Select barrier columns; ``succeeded`` adds the per-worker counts."""
    succeeded = (
        f'(b.succeeded + coalesce((SELECT sum(c.succeeded) FROM "{schema}".scatter_counts c '
        "WHERE c.barrier_id = b.id), 0))::bigint AS succeeded"
    )
    listed = ", ".join(
        succeeded if c.strip() == "succeeded" else f"b.{c.strip()}" for c in columns.split(",")
    )
    return f'SELECT {listed} FROM "{schema}".scatter_barriers b'


async def cancel_once_stored(
    runtime: fs.Runtime,
    assets: list[Any],
    run_id: str,
    conn: asyncpg.Connection,
    schema: str,
    count: int,
) -> None:
    """Materialize ``assets`` and cancel the run once ``count`` items' results are stored
    (an item row may also be a pending item, not yet run: those do not count)."""

    async def stored() -> int:
        try:
            found = await conn.fetchval(
                f"SELECT count(*) FROM \"{schema}\".scatter_items WHERE status = 'succeeded'"
            )
        except asyncpg.UndefinedTableError:
            return 0
        return int(found)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(runtime.materialize, assets, run_id=run_id))
            while await stored() < count:
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


async def items_table(conn: asyncpg.Connection, schema: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f'SELECT idx, key, status, result::text AS result, attempts, claims FROM "{schema}".scatter_items ORDER BY idx'
    )


@fs.asset
def orders() -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "total": i} for i in range(30)]


async def test_results_in_source_order_with_summary(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    @fs.asset
    @scatter(items=lambda deps: deps["orders"], key=lambda o: o["id"], max_concurrent=4)
    async def enriched(ctx: fs.Context, item: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.001 * (item["total"] % 3))  # finish out of order
        return {"key": ctx.scatter_key, "double": item["total"] * 2}

    result = await durable.materialize([orders, enriched], run_id="r1")
    assert result["enriched"] == [{"key": f"o{i}", "double": i * 2} for i in range(30)]
    summary = result.records["enriched"].metadata["scatter"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (30, 30, 0)
    assert summary["failures"] == []
    rows = await items_table(pg_conn, pg_schema)
    assert [r["key"] for r in rows] == [f"o{i}" for i in range(30)]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert json.loads(rows[7]["result"]) == {"key": "o7", "double": 14}
    barrier = await pg_conn.fetchrow(
        barrier_sql(pg_schema, "status, total, succeeded") + " WHERE b.barrier_key = $1",
        barrier_key("r1", "enriched", None),
    )
    assert barrier is not None and tuple(barrier) == ("done", 30, 30)
    assert await durable.load("enriched") == result["enriched"]


async def test_dependencies_context_and_sync_functions(durable: fs.Runtime) -> None:
    @fs.asset
    def factor() -> int:
        return 10

    @fs.asset
    @scatter(items=lambda deps: range(deps["factor"]), max_concurrent=3)
    def scaled(ctx: fs.Context, item: int, factor: int) -> list[Any]:
        return [ctx.scatter_key, item * factor, fs.current_context().scatter_key]

    result = await durable.materialize([factor, scaled])
    assert result["scaled"] == [[str(i), i * 10, str(i)] for i in range(10)]


async def test_tolerated_failures_are_listed(durable: fs.Runtime) -> None:
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

    result = await durable.materialize([mostly])
    assert result["mostly"] == [i for i in range(20) if i not in (4, 9)]
    summary = result.records["mostly"].metadata["scatter"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (20, 18, 2)
    assert summary["retried"] == 2
    assert sorted(summary["failures"], key=lambda f: f["key"]) == [
        {"key": "4", "error": "ValueError: item 4 is bad"},
        {"key": "9", "error": "ValueError: item 9 is bad"},
    ]


async def test_threshold_exceeded_fails_the_asset_and_stops_claiming(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    started: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(200), max_concurrent=2, tolerated_failure=1)
    async def fragile(item: int) -> int:
        started.append(item)
        if item >= 5:
            raise ValueError("broken")
        return item

    @fs.asset
    def downstream(fragile: list[int]) -> int:
        return len(fragile)

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await durable.materialize([fragile, downstream], run_id="t1")
    error = caught.value
    assert error.asset == "fragile" and error.total == 200
    assert error.failed >= 2 and error.succeeded == 5
    assert error.first_errors[0][1] == "ValueError: broken"
    assert len(started) < 40  # everyone stopped claiming soon after the decision
    status = await pg_conn.fetchval(
        f'SELECT status FROM "{pg_schema}".scatter_barriers WHERE barrier_key = $1',
        barrier_key("t1", "fragile", None),
    )
    assert status == "exceeded"
    result = await durable.materialize([fragile, downstream], raise_on_error=False)
    assert "downstream" in result.skipped
    record = result.records["fragile"]
    assert record.error_type == "ScatterFailureThresholdExceeded"
    assert record.metadata["scatter"]["failed"] >= 2


async def test_exact_threshold_with_a_fraction(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(300), max_concurrent=8, tolerated_failure=0.01)
    async def three_bad(item: int) -> int:
        if item % 100 == 7:
            raise ValueError("bad")
        return item

    @fs.asset
    @scatter(items=lambda deps: range(300), max_concurrent=8, tolerated_failure=0.01)
    async def four_bad(item: int) -> int:
        if item % 100 == 7 or item == 299:
            raise ValueError("bad")
        return item

    result = await durable.materialize([three_bad])
    assert len(result["three_bad"]) == 297
    with pytest.raises(ScatterFailureThresholdExceeded):
        await durable.materialize([four_bad])


async def test_events_go_to_the_sinks(pg_store: PostgresStore) -> None:
    sink = fs.MemoryEventSink()

    @fs.asset
    @scatter(items=lambda deps: range(6), max_concurrent=2, tolerated_failure=1)
    async def watched(item: int) -> int:
        if item == 3:
            raise ValueError("three")
        return item

    coordinator = PostgresScatterCoordinator(pg_store)
    async with durable_runtime(coordinator, store=pg_store, event_sinks=[sink]) as runtime:
        await runtime.materialize([watched])
    (started,) = sink.of_type(ScatterStarted)
    assert started.max_concurrent == 2  # type: ignore[attr-defined]
    items = sink.of_type(ScatterItemFinished)
    assert sorted(e.key for e in items) == [str(i) for i in range(6)]  # type: ignore[attr-defined]
    failed = [e for e in items if e.status is fs.Status.FAILED]  # type: ignore[attr-defined]
    assert [(e.key, e.error) for e in failed] == [("3", "ValueError: three")]  # type: ignore[attr-defined]
    progress = sink.of_type(ScatterProgress)
    assert progress and progress[-1].done == 6 and progress[-1].failed == 1  # type: ignore[attr-defined]
    (finished,) = sink.of_type(ScatterFinished)
    assert finished.status == "succeeded"  # type: ignore[attr-defined]
    assert (finished.total, finished.succeeded, finished.failed) == (6, 5, 1)  # type: ignore[attr-defined]


async def test_gather_function_streams_results_in_order(durable: fs.Runtime) -> None:
    seen: list[str] = []

    async def total(results: AsyncIterator[tuple[str, int]]) -> int:
        acc = 0
        async for key, value in results:
            seen.append(key)
            acc += value
        return acc

    @fs.asset
    @scatter(items=lambda deps: range(2500), max_concurrent=16, gather=total)
    async def summed(item: int) -> int:
        return item

    result = await durable.materialize([summed])
    assert result["summed"] == sum(range(2500))
    assert seen == [str(i) for i in range(2500)]


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


async def test_reader_pages_are_checkpointed(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    reader = PagedReader(25)

    @fs.asset
    @scatter(reader=reader, max_concurrent=3, page_size=10)
    async def from_reader(item: int) -> int:
        return item * 3

    result = await durable.materialize([from_reader], run_id="rd")
    assert result["from_reader"] == [i * 3 for i in range(25)]
    assert reader.cursors == [None, "10", "20"]
    row = await pg_conn.fetchrow(
        f'SELECT enumerated, source_done, total FROM "{pg_schema}".scatter_barriers'
    )
    assert row is not None and tuple(row) == (25, True, 25)


async def test_async_generator_source(durable: fs.Runtime) -> None:
    async def stream(deps: Any) -> AsyncIterator[int]:
        for i in range(40):
            if i % 10 == 0:
                await anyio.sleep(0.01)
            yield i

    @fs.asset
    @scatter(items=stream, max_concurrent=4, page_size=16)
    async def doubled(item: int) -> int:
        return item * 2

    result = await durable.materialize([doubled])
    assert result["doubled"] == [i * 2 for i in range(40)]


async def test_batches_account_per_item(durable: fs.Runtime) -> None:
    calls: list[tuple[int | None, int | None, list[int]]] = []

    @fs.asset
    @scatter(
        items=lambda deps: range(10),
        max_concurrent=2,
        batch=Batch(max_items=3, on_item_error="collect_errors"),
        tolerated_failure=1,
    )
    async def batched(ctx: fs.Context, item: list[int]) -> list[Any]:
        calls.append((ctx.batch_index, ctx.batch_count, list(item)))
        return [ValueError("seven") if i == 7 else i * 10 for i in item]

    result = await durable.materialize([batched])
    assert result["batched"] == [i * 10 for i in range(10) if i != 7]
    assert sorted(c[2] for c in calls) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert sorted(c[0] for c in calls if c[0] is not None) == [0, 1, 2, 3]
    summary = result.records["batched"].metadata["scatter"]
    assert (summary["succeeded"], summary["failed"]) == (9, 1)
    assert summary["failures"] == [{"key": "7", "error": "ValueError: seven"}]


async def test_grouped_batches_from_a_streaming_source(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(
        items=lambda deps: iter(range(50)),
        max_concurrent=3,
        page_size=7,
        batch=Batch(max_items=4, group_by=lambda i: i % 3),
    )
    async def grouped(item: list[int]) -> list[int]:
        assert len({i % 3 for i in item}) == 1
        return [-i for i in item]

    result = await durable.materialize([grouped])
    assert result["grouped"] == [-i for i in range(50)]


async def test_resume_runs_only_failed_items_again(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    runs: list[int] = []
    broken = {3, 8}

    @fs.asset
    @scatter(items=lambda deps: range(12), max_concurrent=3)
    async def flaky(item: int) -> int:
        runs.append(item)
        if item in broken:
            raise RuntimeError("not yet")
        return item

    with pytest.raises(ScatterFailureThresholdExceeded):
        await durable.materialize([flaky], run_id="again")
    first = list(runs)
    succeeded_before = {
        r["idx"] for r in await items_table(pg_conn, pg_schema) if r["status"] == "succeeded"
    }
    broken.clear()
    runs.clear()
    result = await durable.materialize([flaky], run_id="again")
    assert result["flaky"] == list(range(12))
    assert not set(runs) & succeeded_before  # finished items are not run again
    assert 3 in runs or 3 not in first
    rows = await items_table(pg_conn, pg_schema)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"succeeded"}


async def test_asset_retry_reruns_failed_items_only(durable: fs.Runtime) -> None:
    runs: list[int] = []

    @fs.asset(retry=fs.Retry(attempts=2, backoff=0))
    @scatter(items=lambda deps: range(6), max_concurrent=2)
    async def second_time(ctx: fs.Context, item: int) -> int:
        runs.append(item)
        if item == 4 and ctx.attempt == 1:
            raise RuntimeError("first attempt")
        return item

    result = await durable.materialize([second_time])
    assert result["second_time"] == list(range(6))
    assert runs.count(4) == 2
    assert all(runs.count(i) == 1 for i in (0, 1, 2, 3))


async def test_changed_code_starts_the_barrier_over(durable: fs.Runtime) -> None:
    def make(factor: int) -> fs.AssetDef[..., Any]:
        @fs.asset(name="scaled", code_version=f"v{factor}")
        @scatter(items=lambda deps: range(5), max_concurrent=2)
        async def scaled(item: int) -> int:
            return item * factor

        return scaled

    first = await durable.materialize([make(2)], run_id="same")
    assert first["scaled"] == [0, 2, 4, 6, 8]
    second = await durable.materialize([make(3)], run_id="same")
    assert second["scaled"] == [0, 3, 6, 9, 12]


async def test_items_that_are_not_json_are_refused_naming_the_key(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(items=lambda deps: [1, {2, 3}], max_concurrent=2)
    async def sets(item: Any) -> int:
        return 1

    with pytest.raises(fs.AssetExecutionError) as caught:
        await durable.materialize([sets])
    message = str(caught.value)
    assert "'sets'" in message and "item '1'" in message and "allow_pickle" in message


async def test_results_that_are_not_json_fail_their_item(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(3), max_concurrent=2, tolerated_failure=3)
    async def objects(item: int) -> Any:
        return object() if item == 1 else item

    result = await durable.materialize([objects])
    assert result["objects"] == [0, 2]
    (failure,) = result.records["objects"].metadata["scatter"]["failures"]
    assert failure["key"] == "1"
    assert "StorageError" in failure["error"] and "'objects'" in failure["error"]
    assert "allow_pickle" in failure["error"]


async def test_pickle_when_opted_in(pg_dsn: str, pg_schema: str) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema, allow_pickle=True, max_size=4)

    @fs.asset
    @scatter(items=lambda deps: [frozenset({1}), frozenset({2, 3})], max_concurrent=2)
    async def frozen(item: frozenset[int]) -> frozenset[int]:
        return item | {0}

    coordinator = PostgresScatterCoordinator(store)
    async with durable_runtime(coordinator, store=store) as runtime:
        result = await runtime.materialize([frozen])
    assert result["frozen"] == [frozenset({0, 1}), frozenset({0, 2, 3})]


async def test_duplicate_keys_fail_naming_the_key(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(
        items=lambda deps: [{"id": 1}, {"id": 2}, {"id": 1}],
        key=lambda o: str(o["id"]),
        page_size=2,
    )
    async def keyed(item: dict[str, int]) -> int:
        return item["id"]

    with pytest.raises(fs.AssetExecutionError, match="duplicate scatter key '1'") as caught:
        await durable.materialize([keyed])
    assert isinstance(caught.value.__cause__, DuplicateScatterKeyError)


async def test_barrier_api(pg_store: PostgresStore) -> None:
    coordinator = PostgresScatterCoordinator(pg_store)
    state = await coordinator.create_barrier(
        "b1", run_id="r", asset="a", partition=None, tolerated_failure=1
    )
    assert (state.total, state.finished) == (None, 0)
    assert (
        await coordinator.create_barrier(
            "b1", run_id="r", asset="a", partition=None, tolerated_failure=1
        )
    ).barrier_id == "b1"
    await coordinator.add_keys("b1", [(0, "x"), (1, "y"), (2, "z")])
    await coordinator.add_keys("b1", [(1, "y")])
    with pytest.raises(DuplicateScatterKeyError, match="'y'"):
        await coordinator.add_keys("b1", [(3, "y")])
    ok = fs.Status.SUCCEEDED
    state = await coordinator.record(
        "b1",
        [
            ScatterItemResult("y", 1, ok, {"v": 1}),
            ScatterItemResult("x", 0, fs.Status.FAILED, error="E: no"),
        ],
    )
    assert (state.succeeded, state.failed, state.exceeded) == (1, 1, False)
    state = await coordinator.record("b1", [ScatterItemResult("y", 1, ok, {"v": 2})])
    assert state.succeeded == 1  # the first terminal result wins
    state = await coordinator.record("b1", [ScatterItemResult("z", 2, fs.Status.FAILED)])
    assert state.exceeded
    state = await coordinator.set_total("b1", 3)
    assert state.done
    results = [r async for r in coordinator.gather("b1")]
    assert [(r.key, r.status, r.value) for r in results] == [
        ("x", fs.Status.FAILED, None),
        ("y", ok, {"v": 1}),
        ("z", fs.Status.FAILED, None),
    ]
    await coordinator.cancel("b1", "enough")
    assert (await coordinator.state("b1")).exceeded
    await coordinator.drop("b1")
    with pytest.raises(KeyError):
        await coordinator.state("b1")


async def test_cancel_stops_a_running_scatter(pg_store: PostgresStore) -> None:
    coordinator = PostgresScatterCoordinator(pg_store, poll_interval=0.05)
    release = anyio.Event()
    ran: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(100), max_concurrent=2)
    async def slow(item: int) -> int:
        ran.append(item)
        if len(ran) == 4:
            release.set()
        await anyio.sleep(0.02)
        return item

    async def cancel_soon() -> None:
        await release.wait()
        await coordinator.cancel(barrier_key("c1", "slow", None), "operator said so")

    async with durable_runtime(coordinator, store=pg_store) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_soon)
            with pytest.raises(fs.AssetExecutionError, match="operator said so") as caught:
                await runtime.materialize([slow], run_id="c1")
    assert isinstance(caught.value.__cause__, BarrierCancelledError)
    assert len(ran) < 30


async def test_a_worker_in_code_shares_the_items(pg_dsn: str, pg_schema: str) -> None:
    seen: dict[str, list[int]] = {"starter": [], "worker": []}

    @fs.asset
    def count() -> int:
        return 300

    @fs.asset
    @scatter(items=lambda deps: range(deps["count"]), max_concurrent=5)
    async def shared(ctx: fs.Context, item: int, count: int) -> int:
        seen[ctx.resources.role].append(item)
        await anyio.sleep(0.005)
        return item + count

    pipeline = fs.Pipeline([count, shared], name="sharing")
    starter_store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    worker_store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    coordinator = PostgresScatterCoordinator(starter_store)
    worker = ScatterWorker(
        fs.Runtime(store=worker_store, resources={"role": "worker"}),
        pipeline,
        stop_when_idle=True,
        idle_timeout=0.5,
        poll_interval=0.05,
    )
    async with durable_runtime(
        coordinator, store=starter_store, resources={"role": "starter"}
    ) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            result = await runtime.materialize(pipeline, run_id="w1")
    await worker_store.aclose()
    assert result["shared"] == [i + 300 for i in range(300)]
    assert seen["worker"] and seen["starter"]
    assert sorted(seen["worker"] + seen["starter"]) == list(range(300))
    assert worker.stats.items == len(seen["worker"])


async def test_a_worker_refuses_other_code(pg_dsn: str, pg_schema: str) -> None:
    @fs.asset(code_version="one")
    @scatter(items=lambda deps: range(50), max_concurrent=2)
    async def versioned(item: int) -> int:
        await anyio.sleep(0.01)
        return item

    other = versioned.replace(code_version="two")
    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    coordinator = PostgresScatterCoordinator(store)
    async with durable_runtime(coordinator, store=store) as runtime:
        async with anyio.create_task_group() as tg:

            async def worker() -> None:
                stats = await run_worker(
                    PostgresStore(pg_dsn, schema=pg_schema, max_size=2),
                    [other],
                    stop_when_idle=True,
                    idle_timeout=0.3,
                    poll_interval=0.02,
                )
                assert stats.items == 0
                assert any("deploy the same code" in why for why in stats.skipped.values())

            tg.start_soon(worker)
            result = await runtime.materialize([versioned])
    assert result["versioned"] == list(range(50))


async def test_killed_connections_do_not_lose_or_repeat_results(
    pg_store: PostgresStore, pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    from flowstone.ext.postgres import RetryPolicy

    # The scatter's statements (and its worker lock) go through a pool of their own, whose
    # backends are killed again and again while the run's records use the runtime's store.
    application = f"fs-scatter-kill-{pg_schema}"  # only this test's backends
    scatter_store = PostgresStore(
        pg_dsn,
        schema=pg_schema,
        max_size=4,
        retry=RetryPolicy(initial_delay=0.01, max_delay=0.2),
        connect_options={"server_settings": {"application_name": application}},
    )
    admin = await asyncpg.connect(pg_dsn)

    @fs.asset
    @scatter(items=lambda deps: range(400), max_concurrent=8)
    async def survivor(item: int) -> int:
        if item % 50 == 0:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                application,
            )
        await anyio.sleep(0.001)
        return item

    coordinator = PostgresScatterCoordinator(scatter_store)
    try:
        async with durable_runtime(coordinator, store=pg_store) as runtime:
            result = await runtime.materialize([survivor])
    finally:
        await scatter_store.aclose()
        await admin.close()
    assert result["survivor"] == list(range(400))
    rows = await items_table(pg_conn, pg_schema)
    assert len(rows) == 400 and {r["status"] for r in rows} == {"succeeded"}
    counts = await pg_conn.fetchrow(barrier_sql(pg_schema, "succeeded, failed"))
    assert counts is not None and tuple(counts) == (400, 0)


async def test_migration_applies_on_top_of_the_first(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    first = load_migrations()[0]
    await pg_conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    await pg_conn.execute(f'SET search_path TO "{pg_schema}"')
    await pg_conn.execute(first.sql)
    await pg_conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await pg_conn.execute(
        "INSERT INTO schema_migrations VALUES (1, $1, $2)", first.name, first.checksum
    )
    await pg_conn.execute("RESET search_path")
    store = PostgresStore(pg_dsn, schema=pg_schema, migrate=False)
    try:
        applied = await store.migrate()
    finally:
        await store.aclose()
    assert 2 in applied
    tables = {
        r["tablename"]
        for r in await pg_conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", pg_schema
        )
    }
    assert {"scatter_barriers", "scatter_items", "scatter_workers"} <= tables


async def test_a_starter_that_only_coordinates(pg_dsn: str, pg_schema: str) -> None:
    where: list[str] = []

    @fs.asset
    @scatter(items=lambda deps: range(40), max_concurrent=4)
    async def elsewhere(ctx: fs.Context, item: int) -> int:
        where.append(ctx.resources.role)
        return item

    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    coordinator = PostgresScatterCoordinator(store, local_concurrency=0, poll_interval=0.05)
    worker = ScatterWorker(
        fs.Runtime(
            store=PostgresStore(pg_dsn, schema=pg_schema, max_size=3), resources={"role": "w"}
        ),
        [elsewhere],
        stop_when_idle=True,
        idle_timeout=0.5,
        poll_interval=0.02,
    )
    async with durable_runtime(coordinator, store=store) as runtime:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            result = await runtime.materialize([elsewhere])
    await worker.runtime.aclose()
    assert result["elsewhere"] == list(range(40))
    assert where == ["w"] * 40


async def test_a_cancelled_batched_scatter_resumes_its_open_batches(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    gate = anyio.Event()
    batches: list[list[int]] = []

    async def stream(deps: Any) -> AsyncIterator[int]:
        for i in range(60):
            if i == 25:
                await gate.wait()
            yield i

    @fs.asset
    @scatter(
        items=stream,
        max_concurrent=2,
        page_size=5,
        batch=Batch(max_items=4, group_by=lambda i: i % 3),
    )
    async def grouped(item: list[int]) -> list[int]:
        batches.append(list(item))
        return [i * 10 for i in item]

    async def enumerated() -> int:
        try:
            value = await pg_conn.fetchval(f'SELECT enumerated FROM "{pg_schema}".scatter_barriers')
        except asyncpg.UndefinedTableError:
            return 0
        return int(value or 0)

    with anyio.move_on_after(20) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(durable.materialize, [grouped], run_id="batched"))
            while await enumerated() < 25:
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    running = await pg_conn.fetchval(
        f"SELECT count(*) FROM \"{pg_schema}\".scatter_items WHERE status = 'running'"
    )
    assert running == 0  # a cancelled process hands back what it held
    open_items = await pg_conn.fetchval(
        f'SELECT count(*) FROM "{pg_schema}".scatter_items WHERE unit IS NULL'
    )
    assert open_items > 0  # batches still open at the checkpoint
    gate.set()
    result = await durable.materialize([grouped], run_id="batched")
    assert result["grouped"] == [i * 10 for i in range(60)]
    for batch in batches:
        assert len(batch) <= 4 and len({i % 3 for i in batch}) == 1
    done = sorted(i for batch in batches for i in batch)
    assert set(done) == set(range(60))


async def test_the_worker_command(
    pg_dsn: str, pg_schema: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from flowstone.cli import load_target
    from flowstone.ext.postgres._worker import register_worker_cli

    module = tmp_path / "cli_pipeline.py"
    module.write_text(
        "import anyio\n"
        "import flowstone as fs\n"
        "from flowstone.ext.scatter import scatter\n\n"
        "@fs.asset\n"
        "@scatter(items=lambda deps: range(60), max_concurrent=3)\n"
        "async def tripled(item: int) -> int:\n"
        "    await anyio.sleep(0.005)\n"
        "    return item * 3\n\n"
        "PIPELINE = fs.Pipeline([tripled], name='cli')\n"
    )
    parser = argparse.ArgumentParser()
    register_worker_cli(parser.add_subparsers())
    args = parser.parse_args(
        [
            "worker",
            "--dsn",
            pg_dsn,
            "--schema",
            pg_schema,
            "--pipeline",
            f"{module}:PIPELINE",
            "--stop-when-idle",
            "1",
            "--max-concurrent",
            "2",
        ]
    )
    pipeline = load_target(f"{module}:PIPELINE")
    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=4)
    await store.migrate()
    coordinator = PostgresScatterCoordinator(store, local_concurrency=0, poll_interval=0.05)
    async with durable_runtime(coordinator, store=store) as runtime:
        async with anyio.create_task_group() as tg:

            async def command() -> None:
                assert await args.func(args) == 0

            tg.start_soon(command)
            result = await runtime.materialize(pipeline)
    assert result["tripled"] == [i * 3 for i in range(60)]
    assert "60 item(s) run" in capsys.readouterr().out


async def test_the_starting_process_writes_each_of_its_own_items_once(
    pg_dsn: str, pg_schema: str, pg_conn: asyncpg.Connection
) -> None:
    queries: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: queries.append(record.query))

    store = PostgresStore(
        pg_dsn, schema=pg_schema, max_size=4, connect_options={"init": log_queries}
    )

    # Room for every item from the start: a page waits only briefly for room, then goes in
    # pending for any worker (a loaded machine may not free room that soon).
    @fs.asset
    @scatter(items=lambda deps: range(300), max_concurrent=300)
    async def tripled(item: int) -> int:
        return item * 3

    async with durable_runtime(PostgresScatterCoordinator(store, lease=2), store=store) as rt:
        result = await rt.materialize([tripled])
    assert result["tripled"] == [i * 3 for i in range(300)]
    q = ScatterQueries(pg_schema)
    row_writers = {
        q.insert_items_json: "insert pending",
        q.insert_page_json: "insert pending",
        q.insert_items: "insert pending",
        q.complete: "complete",
        q.complete_json: "complete",
        q.complete_local: "insert finished",
        q.complete_local_json: "insert finished",
    }
    writes = [row_writers[query] for query in queries if query in row_writers]
    assert set(writes) == {"insert finished"}  # no pending rows, no completions
    assert len(writes) < 300 / 4  # in batches
    rows = await pg_conn.fetch(
        f'SELECT status, item IS NULL AS no_item, claims FROM "{pg_schema}".scatter_items'
    )
    assert len(rows) == 300
    # Rows that went in to be claimed keep their item: these went in finished.
    assert all(r["status"] == "succeeded" and r["no_item"] and r["claims"] == 1 for r in rows)


async def test_results_kept_in_memory_load_as_stored_ones_do(durable: fs.Runtime) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(6), max_concurrent=2)
    async def pairs(item: int) -> Any:
        return (item, str(item)) if item % 2 else item / 2

    result = await durable.materialize([pairs])
    expected = [0.0, [1, "1"], 1.0, [3, "3"], 2.0, [5, "5"]]
    assert result["pairs"] == expected
    assert await durable.load("pairs") == expected


async def test_a_resumed_scatter_skips_what_was_stored_past_its_checkpoint(
    pg_store: PostgresStore,
    pg_conn: asyncpg.Connection,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Items run before being stored hold the checkpoint back until they are written; the
    ones written past it are not run again when the scatter resumes."""
    # The starting process takes every item itself, however slow the machine: a page
    # waits for its free slots as long as it takes (by default 50 ms, then the rest of
    # the page is stored for any worker, which would store item 50 as well).
    monkeypatch.setattr(_scatter_source, "_ROOM_WAIT", 60.0)
    release = anyio.Event()
    runs: list[int] = []

    @fs.asset
    @scatter(items=lambda deps: range(100), max_concurrent=4)
    async def held(item: int) -> int:
        runs.append(item)
        if item == 50:
            await release.wait()
        return item

    coordinator = PostgresScatterCoordinator(pg_store, lease=2, flush_interval=0)
    async with durable_runtime(coordinator, store=pg_store) as runtime:
        await cancel_once_stored(runtime, [held], "past", pg_conn, pg_schema, 99)
        barrier = await pg_conn.fetchrow(
            f'SELECT enumerated, source_done FROM "{pg_schema}".scatter_barriers'
        )
        assert barrier is not None
        assert barrier["enumerated"] <= 50 and not barrier["source_done"]
        missing = await pg_conn.fetch(
            f"SELECT s.i FROM generate_series(0, 99) AS s(i) WHERE NOT EXISTS "
            f'(SELECT 1 FROM "{pg_schema}".scatter_items WHERE idx = s.i)'
        )
        assert [r["i"] for r in missing] == [50]
        release.set()
        runs.clear()
        result = await runtime.materialize([held], run_id="past")
    assert result["held"] == list(range(100))
    assert runs == [50]
    rows = await items_table(pg_conn, pg_schema)
    assert [r["idx"] for r in rows] == list(range(100))
    assert {r["status"] for r in rows} == {"succeeded"}


async def test_a_process_keeps_its_worker_session_for_the_next_scatter(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(5), max_concurrent=2)
    async def small(item: int) -> int:
        return item + 1

    workers = f'SELECT worker_no FROM "{pg_schema}".scatter_workers'
    coordinator = PostgresScatterCoordinator(pg_store, lease=2)
    async with durable_runtime(coordinator, store=pg_store) as runtime:
        assert (await runtime.materialize([small]))["small"] == [1, 2, 3, 4, 5]
        first = [r["worker_no"] for r in await pg_conn.fetch(workers)]
        assert (await runtime.materialize([small], force=True))["small"] == [1, 2, 3, 4, 5]
        assert [r["worker_no"] for r in await pg_conn.fetch(workers)] == first
        # An item a kept session still held (its executor could not hand it back) goes
        # back to the pool when the session is taken up again.
        await pg_conn.execute(
            f"UPDATE \"{pg_schema}\".scatter_items SET status = 'running', worker = $1 "
            "WHERE idx = 0",
            first[0],
        )
        session = coordinator._sessions[0]
        assert await session.resume()
        status = await pg_conn.fetchval(
            f'SELECT status FROM "{pg_schema}".scatter_items WHERE idx = 0 LIMIT 1'
        )
        assert status == "pending"
        await coordinator._release_session(session, reusable=True)
    assert await pg_conn.fetch(workers) == []  # closed with the runtime


@pytest.mark.parametrize("count", [0, 1, 7])
async def test_small_sources_end_their_barrier(
    durable: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str, count: int
) -> None:
    @fs.asset
    @scatter(items=lambda deps: range(count), max_concurrent=3)
    async def few(item: int) -> int:
        return item * 5

    result = await durable.materialize([few])
    assert result["few"] == [i * 5 for i in range(count)]
    summary = result.records["few"].metadata["scatter"]
    assert (summary["total"], summary["succeeded"]) == (count, count)
    barrier = await pg_conn.fetchrow(
        f'SELECT status, total, enumerated, source_done FROM "{pg_schema}".scatter_barriers'
    )
    assert barrier is not None and tuple(barrier) == ("done", count, count, True)


async def test_a_reader_checkpoint_stays_on_a_page_boundary_with_its_cursor(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    """Items run before being stored hold a reader's checkpoint at the boundary of the page
    before them, with that page's cursor; a resumed scatter reads on from there."""
    release = anyio.Event()
    reader = PagedReader(60)
    runs: list[int] = []

    @fs.asset
    @scatter(reader=reader, max_concurrent=4, page_size=10)
    async def paged(item: int) -> int:
        runs.append(item)
        if item == 35:
            await release.wait()
        return item

    coordinator = PostgresScatterCoordinator(pg_store, lease=2, flush_interval=0)
    async with durable_runtime(coordinator, store=pg_store) as runtime:
        await cancel_once_stored(runtime, [paged], "pages", pg_conn, pg_schema, 59)
        barrier = await pg_conn.fetchrow(
            f'SELECT enumerated, cursor, source_done FROM "{pg_schema}".scatter_barriers'
        )
        assert barrier is not None and not barrier["source_done"]
        assert barrier["enumerated"] in (0, 10, 20, 30)
        assert barrier["cursor"] == (str(barrier["enumerated"]) if barrier["enumerated"] else None)
        release.set()
        runs.clear()
        reader.cursors.clear()
        result = await runtime.materialize([paged], run_id="pages")
    assert result["paged"] == list(range(60))
    assert runs == [35]
    assert reader.cursors[0] == barrier["cursor"]


@pytest.mark.parametrize("tolerated", [float("nan"), -1, 1.5, True, "2"])
async def test_barrier_api_refuses_the_tolerances_the_in_process_one_refuses(
    pg_store: PostgresStore, tolerated: object
) -> None:
    coordinator = PostgresScatterCoordinator(pg_store)
    with pytest.raises(ValueError, match="tolerated_failure"):
        await coordinator.create_barrier(
            "b-bad",
            run_id="r",
            asset="a",
            partition=None,
            tolerated_failure=tolerated,  # type: ignore[arg-type]
        )
    assert await coordinator.ops.by_key("b-bad") is None  # nothing stored
