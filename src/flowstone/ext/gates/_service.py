"""One runtime's gates: the token signer, the store and clock, and the live waits.

:class:`GateService` holds what the coordinator and the module-level operations
(``send_signal``, ``approve``, ...) share for one runtime: its secrets, its gate store,
its clock, and an event per gate that a run waits on in process, set when this process
resolves the gate (or, with a store that feeds resolutions across processes, when
another one does).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio

from flowstone import ConfigurationError, MemoryGateStore, StorageError
from flowstone.protocols import GateRecord, GateStatus, check_json

from ._errors import GateClosedError, GateNotFoundError, InvalidTokenError, TokenExpiredError
from ._events import GateCancelled, GateExpired, GateOpened, GateResolved
from ._tokens import ENV_SECRET, TokenSigner, new_gate_id, secrets_from, token_hash
from ._types import Notifier, OpenGate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from flowstone import Runtime
    from flowstone.events import Event
    from flowstone.protocols import GateStore

    from ._spec import GateSpec

__all__ = ["GateService", "ResolutionFeed", "SecretInput"]

_log = logging.getLogger("flowstone.gates")

#: What ``install(secret=...)`` takes: one secret, or several (the first signs).
SecretInput = str | bytes | list[str | bytes] | tuple[str | bytes, ...]


@runtime_checkable
class ResolutionFeed(Protocol):
    """A gate store that tells this process when any process closes a gate (optional).

    ``PostgresStore``'s gate store implements it with ``LISTEN``/``NOTIFY``. Contract:
    after ``listen`` returns, ``on_closed(gate_id)`` is called on the event loop for every
    gate closed by any process; it is stopped when the store closes.
    """

    async def listen(self, on_closed: Callable[[str], None]) -> None:
        """Start calling ``on_closed`` with the id of every gate closed from now on."""
        ...


def inputs_digest(versions: Mapping[str, str]) -> str:
    """A digest of an invocation's input versions: a gate is reused only for the same."""
    text = json.dumps(dict(versions), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _deadline(now: datetime, timeout: float | None) -> datetime | None:
    """``now + timeout``, rounded up to a whole second (a token holds whole seconds)."""
    if timeout is None:
        return None
    at = now + timedelta(seconds=timeout)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at


class GateService:
    """The gates of one runtime.

    :param runtime: the runtime whose gate store, clock and sinks it uses
    :param secret: the signing secrets; default ``FLOWSTONE_GATE_SECRET``, else (only
        with the in-memory gate store) a random secret of this runtime's own
    """

    def __init__(self, runtime: Runtime, secret: SecretInput | None = None) -> None:
        self.runtime = runtime
        self._secret = secret
        self._signer: TokenSigner | None = None
        self._waiters: dict[str, anyio.Event] = {}
        self._listen_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<GateService store={type(self.store).__name__}>"

    @property
    def store(self) -> GateStore:
        """The runtime's gate store."""
        return self.runtime.gate_store

    def now(self) -> datetime:
        """The time on the runtime's clock."""
        return self.runtime.clock.now()

    @property
    def signer(self) -> TokenSigner:
        """The signer, made on first use.

        :raises ConfigurationError: no secret, and the gate store is durable
        """
        if self._signer is None:
            keys = secrets_from(self._secret)
            if keys is None:
                if not isinstance(self.store, MemoryGateStore):
                    raise ConfigurationError(
                        f"gates need a secret to sign tokens with a durable gate store "
                        f"({type(self.store).__name__}): pass gates.install(runtime, "
                        f"secret=...) or set the {ENV_SECRET} environment variable"
                    )
                keys = [secrets.token_bytes(32)]  # in memory: tokens die with the runtime
            self._signer = TokenSigner(keys)
        return self._signer

    def emit(self, event: Event) -> None:
        """Send ``event`` to the runtime's sinks (if it has any)."""
        if self.runtime.has_sinks:
            self.runtime.emit(event)

    # -- opening ---------------------------------------------------------------------

    async def open(
        self,
        spec: GateSpec,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        inputs: str,
    ) -> GateRecord:
        """Open a new gate, commit it, then notify; return it as stored.

        :raises ConfigurationError: no secret for a durable gate store
        :raises Exception: what the notifier raised (the gate is cancelled first)
        """
        signer = self.signer
        now = self.now()
        expires = _deadline(now, spec.timeout)
        gate_id = new_gate_id()
        token = signer.sign(gate_id, expires)
        record = GateRecord(
            gate_id=gate_id,
            run_id=run_id,
            asset=asset,
            partition=partition,
            kind=spec.gate_kind,
            status=GateStatus.WAITING,
            created_at=now,
            expires_at=expires,
            metadata={"inputs": inputs, "on_timeout": spec.on_timeout},
            message=spec.message,
            token_hash=token_hash(token),
        )
        stored = await self.store.create(record)
        self.emit(
            GateOpened(
                run_id=run_id,
                asset=asset,
                partition=partition,
                gate_id=gate_id,
                kind=spec.gate_kind,
                expires_at=expires,
                message=spec.message,
            )
        )
        notify = spec.notify
        if notify is None:
            return stored
        opened = OpenGate(
            gate_id=gate_id,
            token=token,
            kind=spec.gate_kind,
            run_id=run_id,
            asset=asset,
            partition=partition,
            created_at=now,
            expires_at=expires,
            message=spec.message,
        )
        try:
            if isinstance(notify, Notifier):
                await notify.notify(opened)
            else:
                await notify(opened)
        except Exception as exc:
            with anyio.CancelScope(shield=True):
                await self.close(
                    stored, GateStatus.CANCELLED, reason=f"notify failed: {type(exc).__name__}"
                )
            raise
        return stored

    # -- waiting ---------------------------------------------------------------------

    async def wait(
        self, gate: GateRecord, hold: float | None, *, just_opened: bool = False
    ) -> GateRecord:
        """Wait in process up to ``hold`` seconds (``None``: no limit) for ``gate`` to
        close; expire it at its deadline. Return it as stored now.

        :param just_opened: ``gate`` is what :meth:`open` returned, read before its notifier
            ran (else it was just read from the store)
        """
        if not gate.status.open:
            return gate
        if just_opened:
            fresh = await self.store.get(gate.gate_id)  # resolved while its notifier ran?
            if fresh is None:
                raise GateNotFoundError(gate.gate_id)
            if not fresh.status.open:
                return fresh
        clock = self.runtime.clock
        if gate.expires_at is not None and clock.now() >= gate.expires_at:
            return await self.expire(gate)
        if hold == 0:
            return gate
        until = gate.expires_at
        if hold is not None:
            held = clock.now() + timedelta(seconds=hold)
            until = held if until is None else min(until, held)
        await self._start_feed()
        event = self._waiters.setdefault(gate.gate_id, anyio.Event())
        current = await self.store.get(gate.gate_id)  # closed before we started waiting?
        if current is not None and current.status.open:
            async with anyio.create_task_group() as tg:

                async def timer() -> None:
                    if until is not None:
                        await clock.sleep_until(until)
                        tg.cancel_scope.cancel()

                async def woken() -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(timer)
                tg.start_soon(woken)
        if self._waiters.get(gate.gate_id) is event and not event.is_set():
            del self._waiters[gate.gate_id]
        current = await self.store.get(gate.gate_id)
        if current is None:
            raise GateNotFoundError(gate.gate_id)
        if current.status.open and current.expires_at is not None:
            if clock.now() >= current.expires_at:
                return await self.expire(current)
        return current

    async def _start_feed(self) -> None:
        """Listen for gates other processes close, if the store can tell (the store keeps
        one listener, and connects it again if it was lost)."""
        store = self.store
        if not isinstance(store, ResolutionFeed):
            return
        async with self._listen_lock:
            await store.listen(self.wake)

    def wake(self, gate_id: str) -> None:
        """Wake the run waiting in this process for ``gate_id``, if one does."""
        event = self._waiters.pop(gate_id, None)
        if event is not None:
            event.set()

    # -- closing ---------------------------------------------------------------------

    async def expire(self, gate: GateRecord) -> GateRecord:
        """Close an open gate whose deadline has passed; return it as stored."""
        at = gate.expires_at or self.now()
        closed, won = await self.store.close(
            gate.gate_id, GateStatus.EXPIRED, at=at, reason="its deadline passed"
        )
        if won:
            self.wake(gate.gate_id)
            self.emit(
                GateExpired(
                    run_id=gate.run_id,
                    asset=gate.asset,
                    partition=gate.partition,
                    gate_id=gate.gate_id,
                    kind=gate.kind,
                    action=str(gate.metadata.get("on_timeout", "fail")),
                    waited=closed.waited or 0.0,
                )
            )
        return closed

    async def close(
        self,
        gate: GateRecord,
        status: GateStatus,
        *,
        by: str | None = None,
        reason: str | None = None,
        payload: Any = None,
    ) -> GateRecord:
        """Close the open ``gate`` with ``status`` once; wake its run and emit the event.

        :raises GateClosedError: it was closed already (by this call's rival, say)
        :raises StorageError: ``payload`` is not JSON-able (nothing changed)
        """
        if payload is not None:
            problem = check_json(payload).problem
            if problem is not None:
                raise StorageError(
                    f"gate {gate.gate_id!r}: the payload cannot be stored: payload{problem}"
                )
        closed, won = await self.store.close(
            gate.gate_id, status, at=self.now(), payload=payload, by=by, reason=reason
        )
        if not won:
            raise GateClosedError(gate.gate_id, f"is {closed.status.value} already")
        self.wake(gate.gate_id)
        if status is GateStatus.CANCELLED:
            self.emit(
                GateCancelled(
                    run_id=gate.run_id,
                    asset=gate.asset,
                    partition=gate.partition,
                    gate_id=gate.gate_id,
                    kind=gate.kind,
                    reason=reason or "cancelled",
                    waited=closed.waited or 0.0,
                )
            )
        else:
            self.emit(
                GateResolved(
                    run_id=gate.run_id,
                    asset=gate.asset,
                    partition=gate.partition,
                    gate_id=gate.gate_id,
                    kind=gate.kind,
                    status=status.value,
                    by=by,
                    waited=closed.waited or 0.0,
                )
            )
        return closed

    # -- finding ---------------------------------------------------------------------

    async def by_token(self, token: object, kind: str) -> GateRecord:
        """The open gate of ``kind`` that ``token`` resolves.

        :raises InvalidTokenError: forged, tampered, truncated, wrong secret, unknown gate,
            or a token of another kind of gate
        :raises TokenExpiredError: the gate's deadline has passed
        :raises GateClosedError: the gate is closed (a replayed token)
        """
        gate_id, expires = self.signer.verify(token)
        gate = await self.store.get(gate_id)
        stored_hash = gate.token_hash if gate is not None else None
        assert isinstance(token, str)  # verify() checked it
        if (
            gate is None
            or stored_hash is None
            or not hmac.compare_digest(stored_hash, token_hash(token))
        ):
            raise InvalidTokenError("the token does not belong to a gate of this runtime")
        if gate.kind != kind:
            raise InvalidTokenError(
                f"the token is for a {gate.kind} gate, not a {kind} gate "
                f"({'send_signal' if gate.kind == 'signal' else 'approve or reject'} takes it)"
            )
        if not gate.status.open:
            raise GateClosedError(gate_id, f"is {gate.status.value} already")
        deadline = gate.expires_at
        if (deadline is None) != (expires is None) or (
            deadline is not None and expires is not None and expires != _whole(deadline)
        ):
            raise InvalidTokenError("the token does not belong to a gate of this runtime")
        if deadline is not None and self.now() >= deadline:
            raise TokenExpiredError(gate_id, deadline)
        return gate

    async def by_id(self, gate_id: str, kind: str | None = None) -> GateRecord:
        """The open gate with this id (of ``kind``, when given).

        :raises GateNotFoundError: no such gate
        :raises GateClosedError: it is closed, or its deadline has passed
        :raises ValueError: it is a gate of another kind
        """
        if not isinstance(gate_id, str) or not gate_id:
            raise ValueError(f"a gate id must be a non-empty string, not {gate_id!r}")
        gate = await self.store.get(gate_id)
        if gate is None:
            raise GateNotFoundError(gate_id)
        if kind is not None and gate.kind != kind:
            raise ValueError(f"gate {gate_id!r} is a {gate.kind} gate, not a {kind} gate")
        if not gate.status.open:
            raise GateClosedError(gate_id, f"is {gate.status.value} already")
        if gate.expires_at is not None and self.now() >= gate.expires_at:
            raise GateClosedError(gate_id, f"expired at {gate.expires_at.isoformat()}")
        return gate


def _whole(at: datetime) -> datetime:
    """``at`` truncated to a whole second (a token's deadline holds whole seconds)."""
    return at.replace(microsecond=0)
