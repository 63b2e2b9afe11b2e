"""The gates plugin's errors: bad definitions, bad tokens, closed gates, rejections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone import DefinitionError, FlowstoneError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "ApprovalRejectedError",
    "GateClosedError",
    "GateDefinitionError",
    "GateError",
    "GateNotFoundError",
    "GateTimeoutError",
    "InvalidTokenError",
    "TokenExpiredError",
]


class GateDefinitionError(DefinitionError):
    """A gate's option cannot work; raised when the asset is defined, naming it."""

    def __init__(self, asset: str, reason: str) -> None:
        self.asset = asset
        super().__init__(f"gate asset {asset!r}: {reason}")


class GateError(FlowstoneError):
    """Base of the errors about one gate."""


class InvalidTokenError(GateError):
    """A token that this runtime did not issue for an open gate: forged, tampered with,
    truncated, signed with a secret it does not know, or for a gate it does not have.

    The message never repeats the token.
    """


class TokenExpiredError(InvalidTokenError):
    """A genuine token whose gate's deadline has passed: the gate refuses it."""

    def __init__(self, gate_id: str, expires_at: datetime) -> None:
        self.gate_id = gate_id
        self.expires_at = expires_at
        super().__init__(f"the token of gate {gate_id!r} expired at {expires_at.isoformat()}")


class GateNotFoundError(GateError, LookupError):
    """No gate has this id."""

    def __init__(self, gate_id: str) -> None:
        self.gate_id = gate_id
        super().__init__(f"no gate {gate_id!r}")


class GateClosedError(GateError):
    """The gate is no longer open: resolved already (a replayed token, a second
    approval), expired, or cancelled; or a cancelled gate was reached by its run."""

    def __init__(self, gate_id: str, detail: str) -> None:
        self.gate_id = gate_id
        super().__init__(f"gate {gate_id!r} {detail}")


class ApprovalRejectedError(GateError):
    """An approval gate was rejected (by a person, or by its timeout with
    ``on_timeout="reject"``): the asset fails with this unless ``on_reject="skip"``.

    :ivar by: who rejected it (``None``: its timeout)
    :ivar reason: why, if they said
    """

    def __init__(self, asset: str, gate_id: str, by: str | None, reason: str | None) -> None:
        self.asset = asset
        self.gate_id = gate_id
        self.by = by
        self.reason = reason
        who = f"by {by}" if by is not None else "by its timeout"
        why = f": {reason}" if reason else ""
        super().__init__(f"asset {asset!r} was rejected {who} (gate {gate_id!r}){why}")


class GateTimeoutError(GateError, TimeoutError):
    """A gate reached its deadline unresolved and its asset has ``on_timeout="fail"``."""

    def __init__(self, asset: str, gate_id: str, timeout: float | None) -> None:
        self.asset = asset
        self.gate_id = gate_id
        self.timeout = timeout
        after = f" after {timeout:g} s" if timeout is not None else ""
        super().__init__(f"gate {gate_id!r} of asset {asset!r} timed out{after}")
