"""The module-level operations: resolve, list and cancel gates; install the plugin.

Each takes ``runtime=`` (default: the current event loop's default runtime, as
everywhere in flowstone) and works in any process whose runtime reaches the same gate
store with the same secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flowstone as fs
from flowstone import ConfigurationError
from flowstone.protocols import GateStatus

from ._coordinator import GateCoordinator

if TYPE_CHECKING:
    from flowstone.protocols import GateRecord

    from ._service import GateService, SecretInput

__all__ = ["approve", "cancel", "install", "list_open", "reject", "send_signal"]

_KINDS = ("signal", "approval")


def install(runtime: fs.Runtime, *, secret: SecretInput | None = None) -> GateCoordinator:
    """Register the gate coordinator on ``runtime``, signing tokens with ``secret``.

    Without ``secret``, ``FLOWSTONE_GATE_SECRET`` is read (several secrets separated by
    commas). There is no built-in secret: with a durable gate store and neither set,
    opening a gate raises :class:`~flowstone.ConfigurationError`; the in-memory gate store
    uses a random secret of the runtime's own. To rotate, put the new secret first and
    keep the old ones after it until their tokens have expired.

    :param secret: a secret of at least 16 bytes, or several (the first signs)
    :return: the coordinator registered as ``"gate"``
    :raises ConfigurationError: an empty list, or a secret too short
    """
    if secret is not None:
        from ._tokens import secrets_from

        secrets_from(secret)  # refuse a bad secret now, not at the first gate
    coordinator = GateCoordinator(secret=secret)
    runtime.coordinators.register("gate", coordinator)
    return coordinator


def _service(runtime: fs.Runtime | None) -> GateService:
    rt = runtime if runtime is not None else fs.default_runtime()
    coordinator = rt.coordinators.get("gate")
    if not isinstance(coordinator, GateCoordinator):
        raise ConfigurationError(
            f"the runtime's 'gate' coordinator is {coordinator!r}, not a GateCoordinator; "
            "use flowstone.ext.gates.install(runtime, secret=...)"
        )
    return coordinator.service(rt)


def _check_by(by: object) -> str:
    if not isinstance(by, str) or not by:
        raise ValueError(f"by= must name who decides (a non-empty string), not {by!r}")
    return by


async def send_signal(
    token: str, payload: Any = None, *, runtime: fs.Runtime | None = None
) -> GateRecord:
    """Resolve the signal gate that ``token`` opens, with ``payload``.

    Exactly one of many concurrent calls with one token succeeds. A run waiting for the
    gate in this process wakes at once; otherwise the next resume of the run (in any
    process) applies the signal.

    :param token: the token the gate's notifier received
    :param payload: JSON-able data for the asset (``signal.payload``)
    :return: the resolved gate (its record: no token)
    :raises InvalidTokenError: forged, tampered, truncated, signed with another secret, or
        not a signal gate's token (no stored row changes)
    :raises TokenExpiredError: the gate's deadline has passed
    :raises GateClosedError: the gate is closed already (a replayed token)
    :raises StorageError: ``payload`` is not JSON-able
    """
    service = _service(runtime)
    gate = await service.by_token(token, "signal")
    return await service.close(gate, GateStatus.SIGNALLED, payload=payload)


async def _decide(
    status: GateStatus,
    gate_id: str | None,
    token: str | None,
    by: str,
    reason: str | None,
    payload: Any,
    runtime: fs.Runtime | None,
) -> GateRecord:
    if (gate_id is None) == (token is None):
        raise ValueError("pass either a gate id or token=, not both or neither")
    who = _check_by(by)
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"reason= must be a string, not {reason!r}")
    service = _service(runtime)
    if token is not None:
        gate = await service.by_token(token, "approval")
    else:
        assert gate_id is not None
        gate = await service.by_id(gate_id, "approval")
    return await service.close(gate, status, by=who, reason=reason, payload=payload)


async def approve(
    gate_id: str | None = None,
    *,
    token: str | None = None,
    by: str,
    reason: str | None = None,
    payload: Any = None,
    runtime: fs.Runtime | None = None,
) -> GateRecord:
    """Approve an approval gate: its asset's body runs (``approval.by``, ``.payload``).

    By ``gate_id`` for trusted callers (your own code, a page behind a login), or with
    ``token=`` for a link that carries one.

    :return: the approved gate
    :raises GateNotFoundError: no gate has this id
    :raises GateClosedError: it is closed already, or past its deadline
    :raises InvalidTokenError: a bad token (see :func:`send_signal`)
    :raises TokenExpiredError: the token's gate is past its deadline
    :raises ValueError: neither or both of ``gate_id`` and ``token``; no ``by``; a
        signal gate's id
    """
    return await _decide(GateStatus.APPROVED, gate_id, token, by, reason, payload, runtime)


async def reject(
    gate_id: str | None = None,
    *,
    token: str | None = None,
    by: str,
    reason: str | None = None,
    payload: Any = None,
    runtime: fs.Runtime | None = None,
) -> GateRecord:
    """Reject an approval gate: its asset fails with ``ApprovalRejectedError`` (or is
    skipped, with ``on_reject="skip"``). Takes what :func:`approve` takes."""
    return await _decide(GateStatus.REJECTED, gate_id, token, by, reason, payload, runtime)


async def list_open(
    *,
    runtime: fs.Runtime | None = None,
    run_id: str | None = None,
    kind: str | None = None,
) -> list[GateRecord]:
    """The open gates, oldest first: of one run, of one kind (``"signal"`` or
    ``"approval"``), or all; for a page of pending approvals. Records hold no tokens.

    :raises ValueError: an unknown ``kind``
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"kind= must be 'signal', 'approval' or None, not {kind!r}")
    return await _service(runtime).store.list_open(run_id, kind)


async def cancel(
    gate_id: str, *, reason: str = "cancelled", runtime: fs.Runtime | None = None
) -> GateRecord:
    """Cancel an open gate: its asset fails with ``GateClosedError`` (at once when it
    waits in this process, else when its run resumes); a later execution of the asset
    (a retry, or a resume after that failure) opens a new gate.

    :return: the cancelled gate
    :raises GateNotFoundError: no gate has this id
    :raises GateClosedError: it is closed already
    """
    service = _service(runtime)
    gate = await service.store.get(gate_id)
    if gate is None:
        from ._errors import GateNotFoundError

        raise GateNotFoundError(gate_id)
    if not gate.status.open:
        from ._errors import GateClosedError

        raise GateClosedError(gate_id, f"is {gate.status.value} already")
    return await service.close(gate, GateStatus.CANCELLED, reason=reason)
