"""Declaring gates: :func:`signal` and :func:`approval`, and the asset kind they attach."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

from flowstone.protocols import AssetKind, attach_kind

from ._errors import GateDefinitionError
from ._types import Notifier

if TYPE_CHECKING:
    from ._types import NotifyTarget

__all__ = [
    "ApprovalSpec",
    "GateSpec",
    "OnReject",
    "OnTimeout",
    "SignalSpec",
    "approval",
    "signal",
]

F = TypeVar("F", bound=Callable[..., Any])

#: What a gate does when its deadline passes unresolved.
OnTimeout = Literal["fail", "skip", "reject", "approve"]
#: What a rejected approval does to its asset.
OnReject = Literal["fail", "skip"]
_SIGNAL_TIMEOUTS = ("fail", "skip")
_APPROVAL_TIMEOUTS: tuple[str, ...] = get_args(OnTimeout)
_ON_REJECT: tuple[str, ...] = get_args(OnReject)


@dataclass(frozen=True)
class GateSpec(AssetKind):
    """The kind of a gate asset: how long it waits and what it does then.

    Attached by :func:`signal` or :func:`approval`; executed by the coordinator
    registered as ``"gate"`` (:class:`~flowstone.ext.gates.GateCoordinator`). The
    coordinator applies the asset's own ``timeout=`` to its body only: time spent
    waiting for the gate does not count.
    """

    kind: ClassVar[str] = "gate"
    applies_own_timeout: ClassVar[bool] = True
    #: ``"signal"`` or ``"approval"``; the name of the parameter the body receives it as.
    gate_kind: ClassVar[str] = "gate"

    timeout: float | None
    on_timeout: OnTimeout = "fail"
    on_reject: OnReject = "fail"
    notify: NotifyTarget | None = None
    hold: float | None = 0
    message: str | None = None

    def fingerprint(self) -> str:
        """The options that change what the asset produces (not its deadline or notifier)."""
        return f"{self.gate_kind}(on_timeout={self.on_timeout!r}, on_reject={self.on_reject!r})"

    def check(self, name: str) -> None:
        """Raise :class:`GateDefinitionError` naming asset ``name`` for a bad option."""
        for option, value, zero_ok in (("timeout", self.timeout, False), ("hold", self.hold, True)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise GateDefinitionError(
                    name, f"{option}= must be a number of seconds or None, not {value!r}"
                )
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
                least = "at least 0" if zero_ok else "more than 0"
                raise GateDefinitionError(
                    name,
                    f"{option}= must be {least} seconds (None: no limit), got {value!r}",
                )
        allowed = _APPROVAL_TIMEOUTS if self.gate_kind == "approval" else _SIGNAL_TIMEOUTS
        if self.on_timeout not in allowed:
            raise GateDefinitionError(
                name,
                f"on_timeout= must be one of {', '.join(map(repr, allowed))} for a "
                f"{self.gate_kind} gate, got {self.on_timeout!r}",
            )
        if self.on_reject not in _ON_REJECT:
            raise GateDefinitionError(
                name,
                f"on_reject= must be one of {', '.join(map(repr, _ON_REJECT))}, "
                f"got {self.on_reject!r}",
            )
        if self.notify is not None and not (
            isinstance(self.notify, Notifier) or callable(self.notify)
        ):
            raise GateDefinitionError(
                name,
                f"notify= must be an async callable or a gates.Notifier, not {self.notify!r}",
            )
        if self.message is not None and not isinstance(self.message, str):
            raise GateDefinitionError(name, f"message= must be a string, not {self.message!r}")


@dataclass(frozen=True)
class SignalSpec(GateSpec):
    """A gate that waits for an external signal (``gates.send_signal(token, payload)``)."""

    gate_kind: ClassVar[str] = "signal"
    reserved_params: ClassVar[frozenset[str]] = frozenset({"signal"})


@dataclass(frozen=True)
class ApprovalSpec(GateSpec):
    """A gate that waits for a person's approval or rejection."""

    gate_kind: ClassVar[str] = "approval"
    reserved_params: ClassVar[frozenset[str]] = frozenset({"approval"})


def _attach(spec: GateSpec) -> Callable[[F], F]:
    def decorate(target: F) -> F:
        name = getattr(target, "name", None) or getattr(target, "__name__", repr(target))
        spec.check(str(name))
        fn = getattr(target, "fn", target)
        if not inspect.iscoroutinefunction(inspect.unwrap(fn)):
            raise GateDefinitionError(str(name), "a gate asset's function must be async def")
        result: F = attach_kind(target, spec)
        return result

    return decorate


def signal(
    *,
    timeout: float | None,
    on_timeout: Literal["fail", "skip"] = "fail",
    notify: NotifyTarget | None = None,
    hold: float | None = 0,
    message: str | None = None,
) -> Callable[[F], F]:
    """Make an asset wait for an external signal before its body runs.

    When the run reaches it, a gate opens (committed to the runtime's gate store), then
    ``notify`` receives a :class:`OpenGate` with the token; the body runs once
    ``gates.send_signal(token, payload)`` resolves the gate, receiving a :class:`Signal`
    as its ``signal`` parameter. Until then the asset waits: in process for ``hold``
    seconds, then suspended (the run ends ``waiting`` and is resumed later, in any
    process). Use it on either side of ``@fs.asset``.

    :param timeout: seconds the gate stays open, required; ``None`` waits forever
    :param on_timeout: ``"fail"`` (:class:`GateTimeoutError`) or ``"skip"``
    :param notify: an async callable or :class:`Notifier` given the :class:`OpenGate`
    :param hold: seconds to wait in process before suspending (default 0); ``None``
        waits in process until the gate resolves or times out
    :param message: what the gate waits for, for people and ``list_open``
    :raises GateDefinitionError: a bad option, or a function that is not ``async def``
    """
    return _attach(
        SignalSpec(
            timeout=timeout, on_timeout=on_timeout, notify=notify, hold=hold, message=message
        )
    )


def approval(
    *,
    timeout: float | None,
    on_timeout: OnTimeout = "fail",
    on_reject: OnReject = "fail",
    notify: NotifyTarget | None = None,
    hold: float | None = 0,
    message: str | None = None,
) -> Callable[[F], F]:
    """Make an asset wait for a person's approval before its body runs.

    Like :func:`signal`, resolved by ``gates.approve`` or ``gates.reject`` (by gate id
    for trusted callers, or with the token of a link). The body receives an
    :class:`Approval` as its ``approval`` parameter. A rejection fails the asset with
    :class:`ApprovalRejectedError`, or skips it with ``on_reject="skip"``.

    :param timeout: seconds the gate stays open, required; ``None`` waits forever
    :param on_timeout: ``"fail"`` (:class:`GateTimeoutError`), ``"skip"``, ``"reject"``
        (as if rejected, then ``on_reject`` applies) or ``"approve"`` (the body runs with
        ``approval.by`` ``None``)
    :param on_reject: ``"fail"`` or ``"skip"``
    :param notify: an async callable or :class:`Notifier` given the :class:`OpenGate`
    :param hold: seconds to wait in process before suspending (default 0); ``None``
        waits in process until the gate resolves or times out
    :param message: the question, shown to approvers (``"Publish the report?"``)
    :raises GateDefinitionError: a bad option, or a function that is not ``async def``
    """
    return _attach(
        ApprovalSpec(
            timeout=timeout,
            on_timeout=on_timeout,
            on_reject=on_reject,
            notify=notify,
            hold=hold,
            message=message,
        )
    )
