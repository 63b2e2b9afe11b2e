"""What a gate hands out and what its asset receives: ``OpenGate``, ``Signal``,
``Approval``, and the ``Notifier`` protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime
    from typing import TypeAlias

__all__ = ["Approval", "NotifyTarget", "Notifier", "OpenGate", "Signal"]


@dataclass(frozen=True, slots=True)
class OpenGate:
    """A gate that just opened, as its notifier receives it.

    This is the only place the token appears: hand it to whoever may resolve the gate
    (the payment provider's callback URL, the approval link). It is not shown in the
    repr, and the store keeps only its hash.

    :ivar gate_id: the gate's id (for trusted callers: ``gates.approve(gate_id, ...)``)
    :ivar token: the secret that resolves the gate (``gates.send_signal(token, ...)``)
    :ivar kind: ``"signal"`` or ``"approval"``
    :ivar expires_at: the gate's deadline (``None``: it never expires)
    :ivar message: what the gate asks, if it says
    """

    gate_id: str
    token: str = field(repr=False)
    kind: str
    run_id: str
    asset: str
    partition: str | None
    created_at: datetime
    expires_at: datetime | None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """The signal that resolved a signal gate, as the asset's ``signal`` parameter.

    :ivar payload: what the sender passed to ``send_signal`` (JSON-able)
    :ivar received_at: when the gate took it (on the runtime's clock)
    :ivar gate_id: the gate it resolved
    """

    payload: Any
    received_at: datetime
    gate_id: str


@dataclass(frozen=True, slots=True)
class Approval:
    """The decision that resolved an approval gate, as the asset's ``approval`` parameter.

    The body runs only for an approval (``approved`` is then true); a rejection fails or
    skips the asset instead. ``by`` is ``None`` when the gate's timeout approved it
    (``on_timeout="approve"``).
    """

    approved: bool
    by: str | None
    reason: str | None
    payload: Any
    decided_at: datetime
    gate_id: str


@runtime_checkable
class Notifier(Protocol):
    """Tells someone that a gate opened (an e-mail, a chat message, a provider's API).

    Called once per gate, after the gate and its token's hash are committed, so a signal
    that arrives at once finds the gate. Raising cancels the gate and fails the attempt
    (a retry opens a new gate and notifies again).
    """

    async def notify(self, gate: OpenGate) -> None:
        """Deliver ``gate`` (and its token) to whoever resolves it."""
        ...


#: What ``notify=`` takes: a :class:`Notifier`, or an async callable taking the ``OpenGate``.
NotifyTarget: TypeAlias = "Notifier | Callable[[OpenGate], Awaitable[Any]]"
