"""Durable gates: the PostgreSQL gate store, and runs that suspend in one process and
finish in another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import pytest

import flowstone as fs
from child_process import Child, command_args, wait_until
from flowstone.ext import gates
from flowstone.ext.postgres import PostgresGateStore, PostgresStore
from flowstone.protocols import GateRecord, GateStatus
from gate_helpers import Inbox

pytestmark = pytest.mark.postgres

CHILD = Path(__file__).with_name("gates_child.py")
SECRET = "a secret the test and its children share"
inbox = Inbox()


@fs.asset
@gates.signal(timeout=600, notify=inbox)
async def paid(signal: gates.Signal) -> Any:
    return signal.payload


@fs.asset
@gates.approval(timeout=600, notify=inbox)
async def signed(approval: gates.Approval) -> Any:
    return {"by": approval.by, "payload": approval.payload}


def gate(gate_id: str, run_id: str = "r1", **changes: Any) -> GateRecord:
    record = GateRecord(
        gate_id=gate_id,
        run_id=run_id,
        asset="approve",
        partition=None,
        kind="approval",
        status=GateStatus.WAITING,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires_at=datetime(2026, 1, 2, tzinfo=UTC),
        metadata={"inputs": "abc"},
        message="Ship it?",
        token_hash="0" * 64,
    )
    return record.replace(**changes)


@pytest.fixture(params=["memory", "postgres"])
async def gate_store(request: pytest.FixtureRequest, pg_store: PostgresStore) -> Any:
    if request.param == "memory":
        return fs.MemoryGateStore()
    return PostgresGateStore(pg_store)


async def test_the_gate_store_contract(gate_store: Any) -> None:
    first = await gate_store.create(gate("g1"))
    assert first == gate("g1")
    assert await gate_store.create(gate("g1", asset="other")) == first
    await gate_store.create(gate("g2", run_id="r2", kind="signal", partition="2026-01-01"))
    await gate_store.create(gate("g3", created_at=datetime(2026, 1, 1, 1, tzinfo=UTC)))
    assert await gate_store.get("missing") is None
    assert (await gate_store.latest("r1", "approve", None)).gate_id == "g3"
    assert (await gate_store.latest("r2", "approve", "2026-01-01")).gate_id == "g2"
    assert await gate_store.latest("r2", "approve", None) is None
    assert [g.gate_id for g in await gate_store.list_open()] == ["g1", "g2", "g3"]
    assert [g.gate_id for g in await gate_store.list_open("r2")] == ["g2"]
    assert [g.gate_id for g in await gate_store.list_open(kind="approval")] == ["g1", "g3"]
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    closed, won = await gate_store.close(
        "g1", GateStatus.APPROVED, at=at, payload={"n": [1, "x"]}, by="ana", reason="ok"
    )
    assert won and closed.status is GateStatus.APPROVED
    assert (closed.resolved_at, closed.resolved_by, closed.reason) == (at, "ana", "ok")
    assert closed.payload == {"n": [1, "x"]} and closed.waited == 12 * 3600
    again, won = await gate_store.close("g1", GateStatus.REJECTED, at=at)
    assert not won and again == closed
    assert await gate_store.get("g1") == closed
    assert (await gate_store.resolve("g1", GateStatus.REJECTED)).status is GateStatus.APPROVED
    with pytest.raises(KeyError):
        await gate_store.close("missing", GateStatus.APPROVED, at=at)
    assert [g.gate_id for g in await gate_store.list_open()] == ["g2", "g3"]


async def test_concurrent_closes_of_one_gate_have_one_winner(gate_store: Any) -> None:
    await gate_store.create(gate("g1"))
    wins: list[bool] = []

    async def close(n: int) -> None:
        _, won = await gate_store.close("g1", GateStatus.SIGNALLED, at=datetime.now(UTC), payload=n)
        wins.append(won)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(close, n)
    assert wins.count(True) == 1


@pytest.fixture
async def rt(pg_store: PostgresStore) -> AsyncIterator[fs.Runtime]:
    async with fs.Runtime(store=pg_store) as runtime:
        gates.install(runtime, secret=SECRET)
        yield runtime


async def test_a_postgres_runtime_keeps_its_gates_in_postgres(
    rt: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    assert isinstance(rt.gate_store, PostgresGateStore)
    first = await rt.materialize([paid], run_id="p1")
    assert first.status is fs.RunStatus.WAITING
    row = await pg_conn.fetchrow(f'SELECT * FROM "{pg_schema}".gates')
    assert row["status"] == "waiting" and row["kind"] == "signal"
    assert inbox.last.token not in str(dict(row))
    await gates.send_signal(inbox.last.token, {"amount": 5}, runtime=rt)
    result = await rt.materialize([paid], run_id="p1")
    assert result["paid"] == {"amount": 5}
    run = await rt.store.get_run("p1")
    assert run is not None and run.status is fs.RunStatus.SUCCEEDED


async def test_fifty_concurrent_signals_on_postgres_have_one_winner(rt: fs.Runtime) -> None:
    await rt.materialize([paid], run_id="c1")
    token = inbox.last.token
    outcomes: list[str] = []

    async def send(n: int) -> None:
        try:
            await gates.send_signal(token, {"n": n}, runtime=rt)
            outcomes.append("ok")
        except gates.GateClosedError:
            outcomes.append("closed")

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(send, n)
    assert outcomes.count("ok") == 1 and outcomes.count("closed") == 49


async def test_bad_tokens_change_no_row_on_postgres(
    rt: fs.Runtime, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    await rt.materialize([paid], run_id="b1")
    token = inbox.last.token

    async def rows() -> list[dict[str, Any]]:
        found = await pg_conn.fetch(f'SELECT * FROM "{pg_schema}".gates ORDER BY seq')
        return [dict(r) for r in found]

    before = await rows()
    # (A signature ends in "AA" one time in 256: then change it to "BA" instead.)
    retouched = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
    for forged in (token[:-1], retouched, token + "x", token.replace("fsg1", "fsg2")):
        with pytest.raises(gates.InvalidTokenError):
            await gates.send_signal(forged, {"amount": 1}, runtime=rt)
    async with fs.Runtime(store=rt.store) as other:
        gates.install(other, secret="another secret, not the one that signed")
        with pytest.raises(gates.InvalidTokenError):
            await gates.send_signal(token, runtime=other)
    assert await rows() == before
    await gates.send_signal(token, {"amount": 2}, runtime=rt)
    after = await rows()
    with pytest.raises(gates.GateClosedError):
        await gates.send_signal(token, {"amount": 3}, runtime=rt)
    assert await rows() == after and after[0]["status"] == "signalled"


async def test_approvals_and_rejections_on_postgres(rt: fs.Runtime) -> None:
    await rt.materialize([signed], run_id="a1")
    [open_gate] = await gates.list_open(runtime=rt, kind="approval")
    await gates.approve(open_gate.gate_id, by="ana", payload={"note": "fine"}, runtime=rt)
    assert (await rt.materialize([signed], run_id="a1"))["signed"] == {
        "by": "ana",
        "payload": {"note": "fine"},
    }
    await rt.materialize([signed], run_id="a2")
    await gates.reject(token=inbox.last.token, by="bo", reason="no", runtime=rt)
    result = await rt.materialize([signed], run_id="a2", raise_on_error=False)
    assert isinstance(result.errors["signed"].__cause__, gates.ApprovalRejectedError)


async def test_a_postgres_runtime_without_a_secret_refuses_to_open_a_gate(
    pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWSTONE_GATE_SECRET", raising=False)
    async with fs.Runtime(store=pg_store) as runtime:
        result = await runtime.materialize([paid], raise_on_error=False)
        error = result.errors["paid"].__cause__
        assert isinstance(error, fs.ConfigurationError) and "FLOWSTONE_GATE_SECRET" in str(error)
        assert await gates.list_open(runtime=runtime) == []


async def test_an_explicit_gate_store_wins_over_the_stores(pg_store: PostgresStore) -> None:
    memory = fs.MemoryGateStore()
    assert fs.Runtime(store=pg_store, gate_store=memory).gate_store is memory


# -- several processes -------------------------------------------------------------


@pytest.fixture
async def side(pg_dsn: str, pg_schema: str) -> AsyncIterator[asyncpg.Connection]:
    """The test's schema with the child's side table, and a connection to read it."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    await conn.execute(f'CREATE TABLE "{pg_schema}".ran (name text NOT NULL)')
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def child_gate_env(
    child_env: dict[str, str], tmp_path: Path, pg_dsn: str, pg_schema: str
) -> dict[str, str]:
    """The children's environment: the secret, the side table's database, the tokens."""
    return {
        **child_env,
        "FLOWSTONE_GATE_SECRET": SECRET,
        "GATES_TEST_DSN": pg_dsn,
        "GATES_TEST_SCHEMA": pg_schema,
        "GATES_TEST_TOKENS": str(tmp_path),
    }


@pytest.fixture
def spawn(
    python: str, child_gate_env: dict[str, str], tmp_path: Path, pg_dsn: str, pg_schema: str
) -> Any:
    def start(role: str, **options: Any) -> Child:
        args = command_args(role, pg_dsn, pg_schema, **options)
        return Child(python, CHILD, args, child_gate_env, tmp_path)

    return start


async def ran(side: asyncpg.Connection, schema: str) -> list[str]:
    rows = await side.fetch(f'SELECT name FROM "{schema}".ran')
    return sorted(r["name"] for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize(
    "signal_alone", [False, True], ids=["signal-and-resume", "signal-then-resume"]
)
async def test_a_run_suspended_in_one_process_finishes_in_another(
    spawn: Any, side: asyncpg.Connection, pg_schema: str, signal_alone: bool
) -> None:
    first = await spawn("run").finish(120)
    assert first == {"status": "waiting", "waiting": ["payment", "receipt"], "receipt": None}
    assert await ran(side, pg_schema) == ["order", "stock"]
    if signal_alone:
        # Resolved while no process runs the pipeline; the next resume applies it.
        assert await spawn("signal", amount=12).finish(120) == {}
        second = await spawn("resume").finish(120)
    else:
        second = await spawn("signal-resume", amount=12).finish(120)
    assert second == {"status": "succeeded", "waiting": [], "receipt": "paid 12 for order 42"}
    # Nothing upstream of the gate ran again.
    assert await ran(side, pg_schema) == ["order", "payment", "receipt", "stock"]


@pytest.mark.slow
async def test_a_signal_from_another_process_wakes_a_run_holding_its_gate(
    spawn: Any, side: asyncpg.Connection, pg_schema: str, pg_dsn: str, tmp_path: Path
) -> None:
    holder = spawn("hold")

    async def gate_open() -> bool:
        return (tmp_path / "order-42").exists()  # written by the notifier, after the commit

    await wait_until(gate_open, holder, "the gate to open")
    # The holder waits with hold=None and an hour's deadline: only the notification of
    # this process's signal can wake it (nothing polls).
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        gates.install(rt, secret=SECRET)
        await gates.send_signal((tmp_path / "order-42").read_text(), {"amount": 3}, runtime=rt)
    result = await holder.finish(60)
    assert result == {"status": "succeeded", "waiting": [], "receipt": "paid 3 for order 42"}


async def test_the_deadline_is_stored_absolute(rt: fs.Runtime) -> None:
    before = rt.clock.now()
    await rt.materialize([paid], run_id="d1")
    [stored] = await gates.list_open(runtime=rt, run_id="d1")
    assert stored.expires_at is not None
    assert before + timedelta(seconds=599) <= stored.expires_at <= before + timedelta(seconds=602)


@pytest.mark.slow
async def test_workers_resume_each_resolved_run_exactly_once(
    spawn: Any,
    python: str,
    child_gate_env: dict[str, str],
    side: asyncpg.Connection,
    pg_schema: str,
    pg_dsn: str,
    tmp_path: Path,
) -> None:
    runs = [f"order-{n}" for n in range(4)]
    for run_id in runs:
        assert (await spawn("run", run_id=run_id).finish(120))["status"] == "waiting"
    async with fs.Runtime(store=PostgresStore(pg_dsn, schema=pg_schema)) as rt:
        gates.install(rt, secret=SECRET)
        for n, run_id in enumerate(runs[:3]):  # the fourth stays open
            await gates.send_signal((tmp_path / run_id).read_text(), {"amount": n}, runtime=rt)
    pipeline = f"{Path(__file__).with_name('gates_pipeline.py')}:SHOP"
    args = ["-m", "flowstone", "worker", f"--dsn={pg_dsn}", f"--schema={pg_schema}"]
    args += [f"--pipeline={pipeline}", "--stop-when-idle=1"]
    workers = [Child(python, Path(args[0]), args[1:], child_gate_env, tmp_path) for _ in range(3)]
    for worker in workers:
        code = await anyio.to_thread.run_sync(lambda w=worker: w.proc.wait(120))
        assert code == 0, worker.output()
    resumed = sum(
        int(line.split()[1])
        for w in workers
        for line in w.out.read_text().splitlines()
        if line.startswith("gates:")
    )
    assert resumed == 3
    names = await ran(side, pg_schema)
    assert names.count("payment") == 3 and names.count("receipt") == 3
    assert names.count("order") == 4  # once per run, never again on resume
    statuses = dict(
        await side.fetch(f'SELECT run_id, status FROM "{pg_schema}".runs')  # type: ignore[arg-type]
    )
    assert statuses == {**dict.fromkeys(runs[:3], "succeeded"), runs[3]: "waiting"}


async def test_a_resumer_sweeps_expired_gates_on_its_clock(pg_store: PostgresStore) -> None:
    from flowstone.ext.postgres import GateResumer
    from flowstone.testing import VirtualClock

    @fs.asset
    @gates.approval(timeout=60, on_timeout="skip")
    async def checked() -> str:
        return "checked"

    pipeline = fs.Pipeline([checked], name="checks")
    clock = VirtualClock()
    async with fs.Runtime(store=pg_store, clock=clock) as rt:
        gates.install(rt, secret=SECRET)
        await rt.materialize(pipeline, run_id="k1")
        resumer = GateResumer(rt, pipeline)
        assert await resumer.sweep() == []  # open, and not due
        await clock.advance(seconds=61)
        assert await resumer.sweep() == ["k1"]
        assert resumer.stats.statuses == {"k1": "succeeded"}
        assert await resumer.sweep() == []  # exactly once
        run = await rt.store.get_run("k1")
        assert run is not None and run.status is fs.RunStatus.SUCCEEDED
        with pytest.raises(fs.ConfigurationError, match="name"):
            GateResumer(rt, fs.Pipeline([checked]))


async def test_a_lost_listener_connects_again_on_the_next_wait(
    rt: fs.Runtime, pg_conn: asyncpg.Connection
) -> None:
    store = rt.gate_store
    assert isinstance(store, PostgresGateStore)
    woken: list[str] = []
    arrived = anyio.Event()

    def on_closed(gate_id: str) -> None:
        woken.append(gate_id)
        arrived.set()

    await store.listen(on_closed)
    await store.listen(on_closed)  # kept once
    listener = store._listener
    assert listener is not None
    pid = listener.get_server_pid()
    await pg_conn.execute("SELECT pg_terminate_backend($1)", pid)
    with anyio.fail_after(10):
        while store._listener is not None:  # asyncpg notices the lost server by itself
            await anyio.sleep(0.01)
    await store.listen(on_closed)
    await store.create(gate("g-again"))
    await store.close("g-again", GateStatus.CANCELLED, at=datetime.now(UTC))
    with anyio.fail_after(10):
        await arrived.wait()
    assert woken == ["g-again"]
