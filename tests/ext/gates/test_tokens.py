"""Gate tokens, tested as an attacker would: forged, tampered, truncated, wrong-secret,
expired and replayed tokens are refused with typed errors and change no stored row."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext import gates
from flowstone.protocols import GateRecord, GateStatus
from flowstone.testing import VirtualClock
from gate_helpers import Env, Inbox

SECRET = "correct horse battery staple"
OLD_SECRET = "an older secret that is still trusted"
inbox = Inbox()


@fs.asset
@gates.signal(timeout=3600, notify=inbox)
async def paid(signal: gates.Signal) -> Any:
    return signal.payload


@fs.asset
@gates.approval(timeout=3600, notify=inbox)
async def approved(approval: gates.Approval) -> Any:
    return approval.by


class OtherGateStore:
    """A gate store that is not the in-memory one (as a durable store is not)."""

    def __init__(self) -> None:
        self._inner = fs.MemoryGateStore()
        self.create = self._inner.create
        self.get = self._inner.get
        self.latest = self._inner.latest
        self.close = self._inner.close
        self.resolve = self._inner.resolve
        self.list_open = self._inner.list_open


async def open_gate(rt: fs.Runtime, asset: Any = paid) -> gates.OpenGate:
    await rt.materialize([asset])
    return inbox.last


async def snapshot(rt: fs.Runtime) -> list[GateRecord | None]:
    return [await rt.gate_store.get(g.gate_id) for g in inbox.opened]


def _mutations() -> st.SearchStrategy[tuple[str, int, str]]:
    return st.tuples(
        st.sampled_from(["flip", "truncate", "insert", "delete", "swap_part"]),
        st.integers(min_value=0, max_value=200),
        st.characters(codec="ascii", categories=["L", "N", "P"]),
    )


def mutate(token: str, how: str, at: int, char: str) -> str:
    i = at % len(token)
    if how == "flip":
        replacement = char if char != token[i] else ("A" if token[i] != "A" else "B")
        return token[:i] + replacement + token[i + 1 :]
    if how == "truncate":
        return token[:i]
    if how == "insert":
        return token[:i] + char + token[i:]
    if how == "delete":
        return token[:i] + token[i + 1 :]
    parts = token.split(".")
    j = at % len(parts)
    parts[j] = parts[j][::-1] if parts[j][::-1] != parts[j] else parts[j] + "0"
    return ".".join(parts)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_mutations())
async def test_any_mutation_of_a_token_is_refused_and_changes_nothing(
    env: Env, mutation: tuple[str, int, str]
) -> None:
    if not inbox.opened or inbox.last.run_id not in {
        r.run_id for r in await env.rt.store.list_runs()
    }:
        inbox.opened.clear()
        await open_gate(env.rt)
    token = inbox.last.token
    forged = mutate(token, *mutation)
    if forged == token:
        return
    before = await snapshot(env.rt)
    with pytest.raises(gates.InvalidTokenError) as info:
        await gates.send_signal(forged, {"amount": 1_000_000}, runtime=env.rt)
    assert type(info.value) is gates.InvalidTokenError
    assert token not in str(info.value)
    assert len(forged) < 8 or forged not in str(info.value)
    assert await snapshot(env.rt) == before


async def test_a_forged_token_with_a_guessed_secret_is_refused(env: Env) -> None:
    genuine = await open_gate(env.rt)
    _, gate_id, deadline, nonce, _ = genuine.token.split(".")
    mac = hmac.new(b"guessed", f"fsg1\n{gate_id}\n{deadline}\n{nonce}".encode(), hashlib.sha256)
    forged = ".".join(
        [
            "fsg1",
            gate_id,
            deadline,
            nonce,
            base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode(),
        ]
    )
    with pytest.raises(gates.InvalidTokenError, match="signature"):
        await gates.send_signal(forged, runtime=env.rt)
    for junk in ("", "fsg1", "x" * 1000, None, 42, genuine.token + ".", genuine.gate_id):
        with pytest.raises(gates.InvalidTokenError):
            await gates.send_signal(junk, runtime=env.rt)  # type: ignore[arg-type]
    stored = await env.rt.gate_store.get(genuine.gate_id)
    assert stored is not None and stored.status is GateStatus.WAITING


async def test_a_token_signed_with_another_secret_is_refused(clock: VirtualClock) -> None:
    async with fs.Runtime(clock=clock) as a, fs.Runtime(clock=clock) as b:
        gates.install(a, secret=SECRET)
        gates.install(b, secret="a different secret entirely")
        b.gate_store = a.gate_store  # the same gates, another secret
        token = (await open_gate(a)).token
        with pytest.raises(gates.InvalidTokenError, match="signature"):
            await gates.send_signal(token, runtime=b)
        assert (await gates.send_signal(token, runtime=a)).status is GateStatus.SIGNALLED


async def test_secrets_rotate_the_first_signs_and_all_verify(clock: VirtualClock) -> None:
    store = fs.MemoryGateStore()
    async with fs.Runtime(clock=clock, gate_store=store) as old:
        gates.install(old, secret=OLD_SECRET)
        old_token = (await open_gate(old)).token
    async with fs.Runtime(clock=clock, gate_store=store) as new:
        gates.install(new, secret=[SECRET, OLD_SECRET])
        new_token = (await open_gate(new)).token
        assert (await gates.send_signal(old_token, runtime=new)).status is GateStatus.SIGNALLED
    async with fs.Runtime(clock=clock, gate_store=store) as newest:
        gates.install(newest, secret=[SECRET])
        assert (await gates.send_signal(new_token, runtime=newest)).status is GateStatus.SIGNALLED


async def test_a_replayed_token_is_refused_as_closed(env: Env) -> None:
    token = (await open_gate(env.rt)).token
    await gates.send_signal(token, {"n": 1}, runtime=env.rt)
    before = await snapshot(env.rt)
    with pytest.raises(gates.GateClosedError, match="signalled already"):
        await gates.send_signal(token, {"n": 2}, runtime=env.rt)
    assert await snapshot(env.rt) == before
    assert before[-1] is not None and before[-1].payload == {"n": 1}


async def test_an_expired_token_is_refused_and_the_row_is_unchanged(env: Env) -> None:
    token = (await open_gate(env.rt)).token
    await env.clock.advance(hours=1, seconds=1)
    before = await snapshot(env.rt)
    with pytest.raises(gates.TokenExpiredError, match="expired at"):
        await gates.send_signal(token, runtime=env.rt)
    assert await snapshot(env.rt) == before


async def test_a_token_of_one_gate_does_not_open_another(env: Env) -> None:
    first = await open_gate(env.rt)
    second = await open_gate(env.rt)
    # The second token's id with the first token's nonce and mac: the signature breaks.
    a = first.token.split(".")
    b = second.token.split(".")
    with pytest.raises(gates.InvalidTokenError):
        await gates.send_signal(".".join([a[0], b[1], a[2], a[3], a[4]]), runtime=env.rt)
    # An approval token does not send a signal, nor a signal token approve.
    approval = await open_gate(env.rt, approved)
    with pytest.raises(gates.InvalidTokenError, match="approval gate"):
        await gates.send_signal(approval.token, runtime=env.rt)
    with pytest.raises(gates.InvalidTokenError, match="signal gate"):
        await gates.approve(token=second.token, by="mallory", runtime=env.rt)


async def test_of_fifty_concurrent_signals_with_one_token_exactly_one_succeeds(env: Env) -> None:
    token = (await open_gate(env.rt)).token
    outcomes: list[str] = []

    async def send(n: int) -> None:
        try:
            await gates.send_signal(token, {"n": n}, runtime=env.rt)
            outcomes.append("ok")
        except gates.GateClosedError:
            outcomes.append("closed")

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(send, n)
    assert outcomes.count("ok") == 1 and outcomes.count("closed") == 49
    resolved = [e for e in env.events.events if isinstance(e, gates.GateResolved)]
    assert len(resolved) == 1


async def test_the_store_keeps_only_the_tokens_hash(env: Env) -> None:
    opened = await open_gate(env.rt)
    stored = await env.rt.gate_store.get(opened.gate_id)
    assert stored is not None
    assert stored.token_hash == hashlib.sha256(opened.token.encode()).hexdigest()
    assert opened.token not in repr(stored) and opened.token not in repr(opened)
    assert opened.token not in str(stored.metadata)


async def test_a_durable_gate_store_without_a_secret_refuses_to_open_a_gate(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWSTONE_GATE_SECRET", raising=False)
    async with fs.Runtime(clock=clock, gate_store=OtherGateStore()) as rt:  # type: ignore[arg-type]
        result = await rt.materialize([paid], raise_on_error=False)
        error = result.errors["paid"].__cause__
        assert isinstance(error, fs.ConfigurationError)
        assert "gates.install(runtime, secret=...)" in str(error)
        assert "FLOWSTONE_GATE_SECRET" in str(error)
        assert await rt.gate_store.list_open() == []
    monkeypatch.setenv("FLOWSTONE_GATE_SECRET", f"{SECRET},{OLD_SECRET}")
    async with fs.Runtime(clock=clock, gate_store=OtherGateStore()) as rt:  # type: ignore[arg-type]
        token = (await open_gate(rt)).token
        assert (await gates.send_signal(token, runtime=rt)).status is GateStatus.SIGNALLED


def test_short_or_empty_secrets_are_refused() -> None:
    rt = fs.Runtime()
    with pytest.raises(fs.ConfigurationError, match="at least 16 bytes"):
        gates.install(rt, secret="short")
    with pytest.raises(fs.ConfigurationError, match="empty list"):
        gates.install(rt, secret=[])


async def test_a_token_binds_the_gates_deadline(env: Env) -> None:
    opened = await open_gate(env.rt)
    assert opened.expires_at is not None
    parts = opened.token.split(".")
    assert parts[2] == str(int(opened.expires_at.timestamp()))
    later = str(int((opened.expires_at + timedelta(days=365)).timestamp()))
    with pytest.raises(gates.InvalidTokenError):
        await gates.send_signal(".".join([*parts[:2], later, *parts[3:]]), runtime=env.rt)
