"""``PostgresEvents``: coarse events of runs in other processes reach a subscriber."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg
import pytest

import flowstone as fs
from child_process import Child, command_args
from flowstone.events import AssetFailed, AssetSucceeded, Event, RunFinished, RunStarted
from flowstone.ext.postgres import PostgresEvents, PostgresStore, RemoteError
from flowstone.ext.postgres._event_codec import decode, encode
from flowstone.ext.scatter import ScatterFinished, ScatterItemFinished, ScatterProgress

pytestmark = pytest.mark.postgres

CHILD = Path(__file__).with_name("events_child.py")


@fs.asset
def one() -> int:
    return 1


@fs.asset
def two(one: int) -> int:
    return one + 1


async def until_finished(events: Any, run_id: str) -> list[Event]:
    seen: list[Event] = []
    with anyio.fail_after(60):
        async for event in events:
            seen.append(event)
            if isinstance(event, RunFinished) and event.run_id == run_id:
                return seen
    raise AssertionError("the subscription ended early")


@pytest.mark.slow
async def test_a_subscriber_sees_a_run_of_another_process(
    python: str, child_env: dict[str, str], tmp_path: Path, pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    async with fs.Runtime(store=store, plugins=[PostgresEvents(store)]) as rt:
        async with rt.subscribe(run_id="remote") as events:
            args = command_args("run", pg_dsn, pg_schema, run_id="remote")
            child = Child(python, CHILD, args, child_env, tmp_path)
            seen = await until_finished(events, "remote")
            done = await child.finish(timeout=60)
    assert done["status"] == "failed"
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    assert [e.asset for e in seen if isinstance(e, AssetSucceeded)] == ["keys", "upper"]
    failed = next(e for e in seen if isinstance(e, AssetFailed))
    assert isinstance(failed.error, RemoteError)
    assert "200 is not enough" in str(failed.error)
    finished = next(e for e in seen if isinstance(e, ScatterFinished))
    assert (finished.total, finished.succeeded) == (200, 200)
    # Coarse: never one notification per item.
    assert not any(isinstance(e, ScatterItemFinished) for e in seen)
    assert len(seen) == done["sent"] < 30
    final = seen[-1]
    assert isinstance(final, RunFinished) and final.status == "failed"


async def test_own_events_are_not_delivered_twice_and_sinks_never_see_others(
    pg_dsn: str, pg_schema: str
) -> None:
    a_store = PostgresStore(pg_dsn, schema=pg_schema)
    b_store = PostgresStore(pg_dsn, schema=pg_schema)
    sink = fs.MemoryEventSink()
    a = fs.Runtime(store=a_store, plugins=[PostgresEvents(a_store)])
    b = fs.Runtime(store=b_store, plugins=[PostgresEvents(b_store)], event_sinks=[sink])
    async with a, b:
        async with a.subscribe(kinds=[RunStarted, RunFinished]) as at_a:
            async with b.subscribe(kinds=[RunStarted, RunFinished]) as at_b:
                await a.materialize([one, two], run_id="from-a")
                got_b = await until_finished(at_b, "from-a")
                await b.materialize([one, two], run_id="from-b")
                got_a = await until_finished(at_a, "from-b")
    # a saw its own run once (directly), then b's (relayed); b likewise.
    assert [(type(e).__name__, e.run_id) for e in got_a] == [
        ("RunStarted", "from-a"),
        ("RunFinished", "from-a"),
        ("RunStarted", "from-b"),
        ("RunFinished", "from-b"),
    ]
    assert [(type(e).__name__, e.run_id) for e in got_b] == [
        ("RunStarted", "from-a"),
        ("RunFinished", "from-a"),
    ]
    # b's sinks got b's own events only.
    assert {e.run_id for e in sink.events} == {"from-b"}


async def test_the_listener_reports_its_health(pg_dsn: str, pg_schema: str) -> None:
    store = PostgresStore(pg_dsn, schema=pg_schema)
    events = PostgresEvents(store)
    async with fs.Runtime(store=store, plugins=[events]) as rt:
        report = await rt.health()
    listener = report["postgres:events"]
    assert listener.status is fs.HealthStatus.UP
    assert listener.detail.startswith(f"listening on flowstone_events_{pg_schema}")
    assert (await events.check_health())[0].status is fs.HealthStatus.DEGRADED  # closed


async def test_scatter_progress_is_relayed_at_most_once_per_interval(pg_schema: str) -> None:
    now = [0.0]
    store = PostgresStore("postgresql://unused@127.0.0.1/none", schema=pg_schema)
    events = PostgresEvents(store, progress_interval=0.5, clock=lambda: now[0])

    def progress(done: int) -> None:
        events.emit(ScatterProgress(run_id="r", asset="s", done=done, total=100))

    for step in range(10):  # ten reports 0.1 s apart: two pass
        now[0] = step * 0.1
        progress(step)
    events.emit(
        ScatterItemFinished(run_id="r", asset="s", key="k", index=0, status=fs.Status.SUCCEEDED)
    )
    relayed = [decode(encode(event, "here")) for event in events._pending]
    assert [e.done for _, e in filter(None, relayed)] == [0, 5]  # type: ignore[attr-defined]


def test_events_round_trip_through_their_payload() -> None:
    error = ValueError("no " + "x" * 2000)
    for event in (
        RunStarted(run_id="r", selection=("a", "b"), partition="p", resumed=True),
        RunFinished(run_id="r", status="failed", duration=1.5, failed=("a",) * 5000),
        AssetFailed(run_id="r", asset="a", partition=None, error=error, attempt=3),
        AssetSucceeded(run_id="r", asset="a", duration=0.1, metadata={"big": "x" * 10**5}),
    ):
        payload = encode(event, "me")
        assert len(payload.encode()) < 8000
        decoded = decode(payload)
        assert decoded is not None
        origin, back = decoded
        assert origin == "me" and type(back) is type(event)
        assert back.run_id == event.run_id and back.timestamp == event.timestamp
    assert decode("not json") is None
    assert decode('{"o": "x", "k": "Unknown", "f": {}}') is None


async def test_a_postgres_store_relays_events_by_default(pg_dsn: str, pg_schema: str) -> None:
    a = fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema))
    b = fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema))
    async with a, b, b.subscribe(run_id="from-a", kinds=[RunStarted, RunFinished]) as at_b:
        await a.materialize([one, two], run_id="from-a")
        got = await until_finished(at_b, "from-a")
        assert (await b.health())["postgres:events"].status is fs.HealthStatus.UP
    assert [type(e).__name__ for e in got] == ["RunStarted", "RunFinished"]


async def test_a_store_without_events_neither_publishes_nor_listens(
    pg_dsn: str, pg_schema: str
) -> None:
    quiet = PostgresStore(pg_dsn, schema=pg_schema, events=False)
    a = fs.Runtime(store=quiet)
    b = fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema))
    async with a, b, b.subscribe(kinds=[RunStarted, RunFinished]) as at_b:
        await a.materialize([one, two], run_id="quiet")
        await b.materialize([one], run_id="loud")
        got = await until_finished(at_b, "loud")
        assert "postgres:events" not in await a.health()
    assert {e.run_id for e in got} == {"loud"}  # b's own only: a's run was never relayed


async def test_a_store_made_from_a_pool_publishes_without_listening(
    pg_dsn: str, pg_schema: str
) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        a = fs.Runtime(store=PostgresStore(pool=pool, schema=pg_schema))
        b = fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema))
        async with a, b, b.subscribe(run_id="pooled", kinds=[RunFinished]) as at_b:
            health = (await a.health())["postgres:events"]
            assert health.status is fs.HealthStatus.UP
            assert health.detail.startswith("publishing on")
            await a.materialize([one, two], run_id="pooled")
            got = await until_finished(at_b, "pooled")
        assert [type(e).__name__ for e in got] == ["RunFinished"]
    finally:
        await pool.close()


async def test_closing_waits_for_the_send_under_way(pg_dsn: str, pg_schema: str) -> None:
    """Events the publishing task is sending when the runtime closes are sent, not
    dropped with the cancelled task."""
    store = PostgresStore(pg_dsn, schema=pg_schema)
    relay = PostgresEvents(store, batch_interval=0, listen=False)
    watcher_store = PostgresStore(pg_dsn, schema=pg_schema)
    async with fs.Runtime(store=watcher_store) as watcher:
        async with watcher.subscribe(kinds=[RunStarted]) as events:
            async with fs.Runtime(store=store, plugins=[relay]):
                relay.emit(RunStarted(run_id="closing", selection=("one",)))
                with anyio.fail_after(10):
                    while not relay.sending:
                        await anyio.lowlevel.checkpoint()
            assert relay.sent == 1
            with anyio.fail_after(10):
                async for event in events:
                    assert event.run_id == "closing"
                    break
