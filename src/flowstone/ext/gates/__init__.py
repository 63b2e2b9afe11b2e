"""Gates: suspend an asset until an external signal or a person's approval.

::

    import flowstone as fs
    from flowstone.ext import gates

    @fs.asset
    @gates.signal(timeout=3600, on_timeout="fail", notify=send_to_payment_provider)
    async def payment(ctx: fs.Context, order: dict, signal: gates.Signal) -> dict:
        return {"order": order["id"], "paid": signal.payload["amount"]}

    @fs.asset
    @gates.approval(timeout=7 * 24 * 3600, on_timeout="reject", message="Publish the report?")
    async def published(ctx: fs.Context, report: dict, approval: gates.Approval) -> str:
        return f"published by {approval.by}"

When a run reaches a gate asset, a gate opens in the runtime's ``GateStore`` (committed,
with its token's hash) and ``notify`` receives a :class:`OpenGate` carrying the token.
The asset waits (in process for ``hold`` seconds, then suspended: the run ends
``waiting``, the process may exit) while the rest of the run goes on. A valid
:func:`send_signal`, :func:`approve` or :func:`reject` — in this process or another,
minutes or days later — resolves it; the next resume of the run (``runtime.resume``,
``flowstone worker``) applies it, and a run waiting in process wakes at once.

Tokens are HMAC-SHA256 signed with secrets from :func:`install` or
``FLOWSTONE_GATE_SECRET`` (no built-in default), bound to the gate and its deadline,
single-use, and never shown in events, logs, records or reprs. Deadlines are absolute,
stored, and read from the runtime's clock (``Runtime(clock=...)``).
"""

from __future__ import annotations

from ._api import approve, cancel, install, list_open, reject, send_signal
from ._coordinator import GateCoordinator
from ._errors import (
    ApprovalRejectedError,
    GateClosedError,
    GateDefinitionError,
    GateError,
    GateNotFoundError,
    GateTimeoutError,
    InvalidTokenError,
    TokenExpiredError,
)
from ._events import GateCancelled, GateEvent, GateExpired, GateOpened, GateResolved
from ._service import ResolutionFeed
from ._spec import ApprovalSpec, GateSpec, OnReject, OnTimeout, SignalSpec, approval, signal
from ._types import Approval, Notifier, OpenGate, Signal

__all__ = (
    "Approval",
    "ApprovalRejectedError",
    "ApprovalSpec",
    "GateCancelled",
    "GateClosedError",
    "GateCoordinator",
    "GateDefinitionError",
    "GateError",
    "GateEvent",
    "GateExpired",
    "GateNotFoundError",
    "GateOpened",
    "GateResolved",
    "GateSpec",
    "GateTimeoutError",
    "InvalidTokenError",
    "Notifier",
    "OnReject",
    "OnTimeout",
    "OpenGate",
    "ResolutionFeed",
    "Signal",
    "SignalSpec",
    "TokenExpiredError",
    "approval",
    "approve",
    "cancel",
    "install",
    "list_open",
    "reject",
    "send_signal",
    "signal",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):  # typing aliases refuse
            pass
del _name, _obj
