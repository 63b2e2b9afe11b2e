"""Signal and approval gates: suspend, notify, resolve, resume, reuse (in memory)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.ext import gates
from flowstone.protocols import GateStatus
from gate_helpers import Env, Inbox

calls: list[str] = []
inbox = Inbox()


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    inbox.opened.clear()


@fs.asset
async def order() -> dict[str, Any]:
    calls.append("order")
    return {"id": 42, "amount": 10}


@fs.asset
async def stock(order: dict[str, Any]) -> int:
    calls.append("stock")
    return 3


@fs.asset
@gates.signal(timeout=3600, notify=inbox)
async def payment(order: dict[str, Any], signal: gates.Signal) -> dict[str, Any]:
    calls.append("payment")
    return {"order": order["id"], "paid": signal.payload["amount"]}


@fs.asset
async def receipt(payment: dict[str, Any]) -> str:
    calls.append("receipt")
    return f"paid {payment['paid']} for {payment['order']}"


SHOP = fs.Pipeline([order, stock, payment, receipt], name="shop")


async def test_a_signal_gate_suspends_the_run_and_a_signal_lets_a_resume_finish(env: Env) -> None:
    first = await env.rt.materialize(SHOP, run_id="r1")
    assert first.status is fs.RunStatus.WAITING
    assert set(first.waiting) == {"payment", "receipt"}
    assert first["stock"] == 3  # independent of the gate: it ran
    assert calls == ["order", "stock"]
    opened = inbox.last
    assert (opened.run_id, opened.asset, opened.kind) == ("r1", "payment", "signal")
    assert opened.expires_at is not None
    assert (opened.expires_at - env.clock.now()).total_seconds() == pytest.approx(3600, abs=1)

    resolved = await gates.send_signal(opened.token, {"amount": 10}, runtime=env.rt)
    assert resolved.status is GateStatus.SIGNALLED and resolved.payload == {"amount": 10}
    calls.clear()
    second = await env.rt.resume("r1", SHOP)
    assert second.ok
    assert second["receipt"] == "paid 10 for 42"
    assert calls == ["payment", "receipt"]  # nothing upstream of the gate ran again
    assert len(inbox.opened) == 1  # the gate was not asked again


async def test_a_run_holding_its_gate_wakes_at_once_on_a_signal(env: Env) -> None:
    @fs.asset
    @gates.signal(timeout=600, hold=None, notify=inbox)
    async def held(signal: gates.Signal) -> Any:
        return signal.payload

    async with anyio.create_task_group() as tg:
        results: list[fs.MaterializeResult] = []

        async def run() -> None:
            results.append(await env.rt.materialize([held]))

        tg.start_soon(run)
        await env.clock.wait_for_sleepers()  # the run waits in process, on its deadline
        await gates.send_signal(inbox.last.token, "now", runtime=env.rt)
    assert results[0].ok and results[0]["held"] == "now"


async def test_a_signal_sent_from_inside_notify_finds_the_gate_committed(env: Env) -> None:
    async def at_once(gate: gates.OpenGate) -> None:
        stored = await env.rt.gate_store.get(gate.gate_id)
        assert stored is not None and stored.status is GateStatus.WAITING
        await gates.send_signal(gate.token, {"fast": True}, runtime=env.rt)

    @fs.asset
    @gates.signal(timeout=60, notify=at_once)
    async def quick(signal: gates.Signal) -> Any:
        return signal.payload

    result = await env.rt.materialize([quick])
    assert result.ok and result["quick"] == {"fast": True}


async def test_hold_waits_in_process_then_suspends(env: Env) -> None:
    @fs.asset
    @gates.signal(timeout=3600, hold=30, notify=inbox)
    async def brief(signal: gates.Signal) -> Any:
        return signal.payload

    async with anyio.create_task_group() as tg:
        results: list[fs.MaterializeResult] = []

        async def run() -> None:
            results.append(await env.rt.materialize([brief], run_id="held"))

        tg.start_soon(run)
        await env.clock.wait_for_sleepers()
        await env.clock.advance(seconds=29)
        assert not results  # still holding
        await env.clock.advance(seconds=1)
    assert results[0].status is fs.RunStatus.WAITING
    await gates.send_signal(inbox.last.token, 7, runtime=env.rt)
    assert (await env.rt.resume("held", fs.Pipeline([brief])))["brief"] == 7


async def test_an_approval_by_gate_id_runs_the_body_with_who_and_why(env: Env) -> None:
    @fs.asset
    @gates.approval(timeout=7 * 24 * 3600, message="Publish the report?")
    async def published(approval: gates.Approval) -> str:
        assert approval.approved
        return f"published by {approval.by} ({approval.reason}, {approval.payload})"

    first = await env.rt.materialize([published], run_id="a1")
    [gate] = await gates.list_open(runtime=env.rt, kind="approval")
    assert gate.message == "Publish the report?" and gate.run_id == "a1"
    await gates.approve(gate.gate_id, by="alice", reason="looks right", payload=1, runtime=env.rt)
    assert first.waiting == ("published",)
    result = await env.rt.materialize([published], run_id="a1")
    assert result["published"] == "published by alice (looks right, 1)"
    assert await gates.list_open(runtime=env.rt) == []


@pytest.mark.parametrize("on_reject", ["fail", "skip"])
async def test_a_rejection_fails_or_skips_the_asset(env: Env, on_reject: str) -> None:
    @fs.asset
    @gates.approval(timeout=60, on_reject=on_reject, notify=inbox)  # type: ignore[arg-type]
    async def shipped(approval: gates.Approval) -> str:
        calls.append("shipped")
        return "shipped"

    await env.rt.materialize([shipped], run_id="j1")
    await gates.reject(token=inbox.last.token, by="bob", reason="wrong address", runtime=env.rt)
    result = await env.rt.materialize([shipped], run_id="j1", raise_on_error=False)
    assert "shipped" not in calls
    if on_reject == "fail":
        error = result.errors["shipped"].__cause__
        assert isinstance(error, gates.ApprovalRejectedError)
        assert (error.by, error.reason) == ("bob", "wrong address")
    else:
        assert result.skipped == ("shipped",)
        assert "rejected by bob: wrong address" in result.outcomes["shipped"].reason  # type: ignore[operator]


async def test_list_open_filters_by_run_and_kind(env: Env) -> None:
    @fs.asset
    @gates.approval(timeout=None)
    async def signed() -> str:
        return "ok"

    await env.rt.materialize(SHOP, run_id="s1")
    await env.rt.materialize([signed], run_id="s2")
    assert {g.kind for g in await gates.list_open(runtime=env.rt)} == {"signal", "approval"}
    assert [g.asset for g in await gates.list_open(runtime=env.rt, run_id="s2")] == ["signed"]
    assert [g.asset for g in await gates.list_open(runtime=env.rt, kind="signal")] == ["payment"]
    [never] = await gates.list_open(runtime=env.rt, kind="approval")
    assert never.expires_at is None
    with pytest.raises(ValueError, match="kind="):
        await gates.list_open(runtime=env.rt, kind="webhook")


async def test_cancel_fails_a_waiting_asset_and_a_resume_asks_again(env: Env) -> None:
    await env.rt.materialize(SHOP, run_id="c1")
    first = inbox.last
    cancelled = await gates.cancel(first.gate_id, reason="order withdrawn", runtime=env.rt)
    assert cancelled.status is GateStatus.CANCELLED and cancelled.reason == "order withdrawn"
    with pytest.raises(gates.GateClosedError, match="cancelled already"):
        await gates.send_signal(first.token, {}, runtime=env.rt)
    with pytest.raises(gates.GateClosedError):
        await gates.cancel(first.gate_id, runtime=env.rt)
    with pytest.raises(gates.GateNotFoundError):
        await gates.cancel("g-missing", runtime=env.rt)
    again = await env.rt.materialize(SHOP, run_id="c1")
    assert again.status is fs.RunStatus.WAITING
    assert inbox.last.gate_id != first.gate_id  # a new gate, notified anew


async def test_cancelling_a_gate_a_run_holds_fails_the_asset_at_once(env: Env) -> None:
    @fs.asset
    @gates.signal(timeout=60, hold=None, notify=inbox)
    async def held() -> str:
        return "never"

    async with anyio.create_task_group() as tg:
        results: list[fs.MaterializeResult] = []

        async def run() -> None:
            results.append(await env.rt.materialize([held], raise_on_error=False))

        tg.start_soon(run)
        await env.clock.wait_for_sleepers()
        await gates.cancel(inbox.last.gate_id, reason="stop", runtime=env.rt)
    error = results[0].errors["held"].__cause__
    assert isinstance(error, gates.GateClosedError) and "stop" in str(error)


async def test_a_resolved_gate_is_reused_when_its_body_is_retried_on_resume(env: Env) -> None:
    broken = {"flag": True}

    @fs.asset
    @gates.signal(timeout=60, notify=inbox)
    async def flaky(signal: gates.Signal) -> Any:
        calls.append("flaky")
        if broken["flag"]:
            raise RuntimeError("downstream API down")
        return signal.payload

    pipeline = fs.Pipeline([flaky])
    await env.rt.materialize(pipeline, run_id="f1")
    await gates.send_signal(inbox.last.token, "v", runtime=env.rt)
    failed = await env.rt.materialize(pipeline, run_id="f1", raise_on_error=False)
    assert failed.failed == ("flaky",)
    broken["flag"] = False
    assert (await env.rt.materialize(pipeline, run_id="f1"))["flaky"] == "v"
    assert len(inbox.opened) == 1
    # A new run must compute the asset afresh: it opens a new gate.
    fresh = await env.rt.materialize(pipeline, run_id="f2")
    assert fresh.status is fs.RunStatus.WAITING and len(inbox.opened) == 2


async def test_a_failing_notifier_cancels_its_gate_and_a_retry_opens_another(env: Env) -> None:
    tries: list[str] = []

    async def flaky_mail(gate: gates.OpenGate) -> None:
        tries.append(gate.gate_id)
        if len(tries) == 1:
            raise ConnectionError("smtp down")

    @fs.asset(retry=fs.Retry(attempts=2, backoff=0))
    @gates.approval(timeout=60, notify=flaky_mail)
    async def mailed() -> str:
        return "ok"

    result = await env.rt.materialize([mailed])
    assert result.waiting == ("mailed",)
    first = await env.rt.gate_store.get(tries[0])
    assert first is not None and first.status is GateStatus.CANCELLED
    assert first.reason == "notify failed: ConnectionError"
    assert [g.gate_id for g in await gates.list_open(runtime=env.rt)] == [tries[1]]


async def test_the_asset_timeout_counts_the_body_not_the_wait(env: Env) -> None:
    @fs.asset(timeout=0.05)
    @gates.signal(timeout=60, hold=None, notify=inbox)
    async def slow_body(signal: gates.Signal) -> str:
        if signal.payload == "slow":
            await anyio.sleep(1)
        return "done"

    async with anyio.create_task_group() as tg:
        results: list[fs.MaterializeResult] = []

        async def run() -> None:
            results.append(await env.rt.materialize([slow_body], raise_on_error=False))

        tg.start_soon(run)
        await env.clock.wait_for_sleepers()
        await anyio.sleep(0.2)  # real time passes while it waits: longer than its timeout
        await gates.send_signal(inbox.last.token, "fast", runtime=env.rt)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await env.clock.wait_for_sleepers()
        await gates.send_signal(inbox.last.token, "slow", runtime=env.rt)
    assert results[0].ok
    assert isinstance(results[1].errors["slow_body"], fs.AssetTimeoutError)


async def test_a_payload_that_cannot_be_stored_is_refused_and_changes_nothing(env: Env) -> None:
    await env.rt.materialize(SHOP, run_id="p1")
    before = await env.rt.gate_store.get(inbox.last.gate_id)
    with pytest.raises(fs.StorageError, match="payload"):
        await gates.send_signal(inbox.last.token, {1, 2}, runtime=env.rt)
    assert await env.rt.gate_store.get(inbox.last.gate_id) == before


async def test_events_tell_opened_resolved_expired_cancelled_without_tokens(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.rt.add_event_sink(fs.LoggingSink())
    caplog.set_level(logging.DEBUG)

    @fs.asset
    @gates.signal(timeout=100, notify=inbox)
    async def late() -> str:
        return "late"

    await env.rt.materialize(SHOP, run_id="e1")
    await env.clock.advance(seconds=5)
    await gates.send_signal(inbox.last.token, {"amount": 1}, runtime=env.rt)
    await env.rt.materialize(SHOP, run_id="e2")
    await gates.cancel(inbox.last.gate_id, reason="dup", runtime=env.rt)
    await env.rt.materialize([late], run_id="e3")
    await env.clock.advance(seconds=200)
    await env.rt.materialize([late], run_id="e3", raise_on_error=False)

    kinds = [type(e).__name__ for e in env.events.events if isinstance(e, gates.GateEvent)]
    assert kinds == [
        "GateOpened",
        "GateResolved",
        "GateOpened",
        "GateCancelled",
        "GateOpened",
        "GateExpired",
    ]
    resolved = next(e for e in env.events.events if isinstance(e, gates.GateResolved))
    assert resolved.status == "signalled" and resolved.waited == pytest.approx(5)
    expired = next(e for e in env.events.events if isinstance(e, gates.GateExpired))
    assert expired.action == "fail" and expired.waited == pytest.approx(100, abs=1)
    everything = " ".join(
        [repr(e) for e in env.events.events]
        + [r.getMessage() for r in caplog.records]
        + [repr(g) for g in inbox.opened]
        + [repr(await env.rt.gate_store.get(g.gate_id)) for g in inbox.opened]
    )
    for opened in inbox.opened:
        assert opened.token not in everything
        assert opened.gate_id in everything


def test_gate_options_are_checked_when_the_asset_is_defined() -> None:
    async def body() -> int:
        return 1

    def plain() -> int:
        return 1

    cases: list[tuple[Any, str]] = [
        (gates.signal(timeout=0), "timeout= must be more than 0"),
        (gates.signal(timeout=-1), "timeout= must be more than 0"),
        (gates.signal(timeout=float("inf")), "timeout="),
        (gates.signal(timeout="1h"), "timeout= must be a number"),  # type: ignore[arg-type]
        (gates.signal(timeout=1, hold=-1), "hold= must be at least 0"),
        (gates.signal(timeout=1, on_timeout="approve"), "on_timeout="),  # type: ignore[arg-type]
        (gates.approval(timeout=1, on_reject="ignore"), "on_reject="),  # type: ignore[arg-type]
        (gates.approval(timeout=1, notify="mail"), "notify= must be"),  # type: ignore[arg-type]
        (gates.approval(timeout=1, message=3), "message="),  # type: ignore[arg-type]
    ]
    for decorator, message in cases:
        with pytest.raises(gates.GateDefinitionError, match=message) as info:
            decorator(body)
        assert "'body'" in str(info.value)
    with pytest.raises(gates.GateDefinitionError, match="'plain'.*async def"):
        gates.signal(timeout=1)(plain)
    with pytest.raises(TypeError, match="timeout"):
        gates.signal()  # type: ignore[call-arg]
    with pytest.raises(fs.InvalidAssetError, match="already a 'gate' asset"):
        gates.approval(timeout=1)(gates.signal(timeout=1)(body))


async def test_approve_checks_its_arguments(env: Env) -> None:
    await env.rt.materialize(SHOP, run_id="x1")
    gate_id = inbox.last.gate_id
    with pytest.raises(ValueError, match="either a gate id or token="):
        await gates.approve(by="a", runtime=env.rt)
    with pytest.raises(ValueError, match="by="):
        await gates.approve(gate_id, by="", runtime=env.rt)
    with pytest.raises(ValueError, match="signal gate"):
        await gates.approve(gate_id, by="a", runtime=env.rt)
    with pytest.raises(gates.InvalidTokenError, match="signal gate"):
        await gates.approve(token=inbox.last.token, by="a", runtime=env.rt)
    with pytest.raises(gates.GateNotFoundError):
        await gates.reject("g-nope", by="a", runtime=env.rt)


async def test_the_default_runtime_is_used_without_runtime() -> None:
    await fs.materialize(SHOP, run_id="d1")
    await gates.send_signal(inbox.last.token, {"amount": 3})
    result = await fs.default_runtime().resume("d1", SHOP)
    assert result["receipt"] == "paid 3 for 42"
