"""Gate timeouts on the virtual clock: every on_timeout action, while a run holds its gate
and while no run waits for it, deadlines kept across runtimes, late signals refused."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.ext import gates
from flowstone.protocols import GateStatus
from flowstone.testing import VirtualClock
from gate_helpers import START, Env, Inbox

WEEK = 7 * 24 * 3600
inbox = Inbox()


def signal_asset(on_timeout: str, hold: float | None = 0) -> Any:
    @fs.asset(name="paid")
    @gates.signal(timeout=3600, on_timeout=on_timeout, hold=hold, notify=inbox)  # type: ignore[arg-type]
    async def paid(signal: gates.Signal) -> Any:
        return signal.payload

    return paid


def approval_asset(on_timeout: str, on_reject: str = "fail", hold: float | None = 0) -> Any:
    @fs.asset(name="published")
    @gates.approval(timeout=WEEK, on_timeout=on_timeout, on_reject=on_reject, hold=hold)  # type: ignore[arg-type]
    async def published(approval: gates.Approval) -> str:
        return f"approved by {approval.by} ({approval.reason})"

    return published


@fs.asset
async def after(published: str) -> str:
    return published.upper()


def outcome(result: fs.MaterializeResult, name: str) -> tuple[str, Any]:
    """(status, value or error or skip reason) of ``name``."""
    o = result.outcomes[name]
    if o.status is fs.Status.SUCCEEDED:
        return "succeeded", o.value
    if o.status is fs.Status.FAILED:
        assert o.error is not None
        return "failed", o.error.__cause__ or o.error
    return o.status.value, o.reason


CASES = [
    ("signal", "fail", "failed", gates.GateTimeoutError),
    ("signal", "skip", "skipped", "signal gate"),
    ("approval", "fail", "failed", gates.GateTimeoutError),
    ("approval", "skip", "skipped", "approval gate"),
    ("approval", "reject", "failed", gates.ApprovalRejectedError),
    ("approval", "approve", "succeeded", "approved by None (approved on timeout)"),
]


def make(kind: str, action: str, hold: float | None = 0) -> fs.Pipeline:
    if kind == "signal":
        return fs.Pipeline([signal_asset(action, hold)])
    return fs.Pipeline([approval_asset(action, hold=hold), after])


def check(result: fs.MaterializeResult, kind: str, status: str, expected: Any) -> None:
    name = "paid" if kind == "signal" else "published"
    got_status, got = outcome(result, name)
    assert got_status == status
    if isinstance(expected, type):
        assert isinstance(got, expected)
    elif status == "skipped":
        assert expected in got and "timed out" in got
    else:
        assert got == expected
    if kind == "approval":
        downstream = outcome(result, "after")[0]
        assert downstream == ("succeeded" if status == "succeeded" else "skipped")


@pytest.mark.parametrize(("kind", "action", "status", "expected"), CASES)
async def test_a_timeout_found_on_resume_applies_the_action(
    env: Env, kind: str, action: str, status: str, expected: Any
) -> None:
    pipeline = make(kind, action)
    first = await env.rt.materialize(pipeline, run_id="t")
    assert first.status is fs.RunStatus.WAITING
    days = 1 if kind == "signal" else 8
    await env.clock.advance(days=days)  # no run waits in process meanwhile
    resumed = await env.rt.materialize(pipeline, run_id="t", raise_on_error=False)
    check(resumed, kind, status, expected)
    expired = [e for e in env.events.events if isinstance(e, gates.GateExpired)]
    assert [e.action for e in expired] == [action]
    assert await gates.list_open(runtime=env.rt) == []


@pytest.mark.parametrize(("kind", "action", "status", "expected"), CASES)
async def test_a_timeout_fires_on_the_clock_while_a_run_holds_its_gate(
    env: Env, kind: str, action: str, status: str, expected: Any
) -> None:
    pipeline = make(kind, action, hold=None)
    results: list[fs.MaterializeResult] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            results.append(await env.rt.materialize(pipeline, raise_on_error=False))

        tg.start_soon(run)
        await env.clock.wait_for_sleepers()
        await env.clock.advance(seconds=3599 if kind == "signal" else WEEK - 1)
        assert not results
        await env.clock.advance(seconds=1)
    check(results[0], kind, status, expected)


async def test_a_rejection_on_timeout_follows_on_reject_skip(env: Env) -> None:
    pipeline = fs.Pipeline([approval_asset("reject", on_reject="skip"), after])
    await env.rt.materialize(pipeline, run_id="rs")
    await env.clock.advance(days=8)
    result = await env.rt.materialize(pipeline, run_id="rs")
    assert outcome(result, "published") == ("skipped", "rejected by its timeout: timed out")
    assert result.skipped == ("published", "after")


async def test_an_expired_gate_refuses_late_signals(env: Env) -> None:
    pipeline = fs.Pipeline([signal_asset("fail")])
    await env.rt.materialize(pipeline, run_id="late")
    token = inbox.last.token
    await env.clock.advance(seconds=3600)
    with pytest.raises(gates.TokenExpiredError):
        await gates.send_signal(token, "too late", runtime=env.rt)
    await env.rt.materialize(pipeline, run_id="late", raise_on_error=False)
    with pytest.raises(gates.GateClosedError, match="expired already"):
        await gates.send_signal(token, "too late", runtime=env.rt)
    with pytest.raises(gates.GateClosedError, match="expired"):
        await gates.cancel(inbox.last.gate_id, runtime=env.rt)


async def test_approving_by_id_after_the_deadline_is_refused(env: Env) -> None:
    pipeline = make("approval", "fail")
    await env.rt.materialize(pipeline, run_id="slow")
    [gate] = await gates.list_open(runtime=env.rt)
    await env.clock.advance(days=7)
    with pytest.raises(gates.GateClosedError, match="expired at"):
        await gates.approve(gate.gate_id, by="late", runtime=env.rt)
    stored = await env.rt.gate_store.get(gate.gate_id)
    assert stored is not None and stored.status is GateStatus.WAITING


async def test_the_stored_deadline_is_armed_again_by_another_runtime() -> None:
    gate_store, store, io = fs.MemoryGateStore(), fs.MemoryStore(), fs.MemoryIOManager()
    pipeline = fs.Pipeline([signal_asset("fail", hold=60)], name="pay")

    def runtime(clock: VirtualClock) -> fs.Runtime:
        rt = fs.Runtime(
            clock=clock,
            store=store,
            gate_store=gate_store,
            io_managers={"memory": io},
            pipelines=[pipeline],
        )
        gates.install(rt, secret="a secret both runtimes share")
        return rt

    first_clock = VirtualClock(START)
    async with runtime(first_clock) as first, anyio.create_task_group() as tg:
        tg.start_soon(first.materialize, pipeline, None)  # positional select=None
        await first_clock.wait_for_sleepers()
        await first_clock.advance(seconds=60)  # held, then suspended
    [gate] = await gate_store.list_open()
    assert gate.expires_at is not None

    later = VirtualClock(START.replace(minute=59, second=50))  # 10 s before the deadline
    results: list[fs.MaterializeResult] = []
    async with runtime(later) as second, anyio.create_task_group() as tg:
        run_id = gate.run_id

        async def resume() -> None:
            results.append(await second.resume(run_id, raise_on_error=False))

        tg.start_soon(resume)
        await later.wait_for_sleepers()
        await later.advance(seconds=10)  # the stored deadline, not a new one
    assert isinstance(outcome(results[0], "paid")[1], gates.GateTimeoutError)
    stored = await gate_store.get(gate.gate_id)
    assert stored is not None and stored.status is GateStatus.EXPIRED
    assert stored.resolved_at == gate.expires_at
