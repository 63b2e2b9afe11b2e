"""The ``"gate"`` coordinator: open (or find) an asset's gate, wait, then apply it.

For each execution of a gate asset it takes the newest gate of (run, asset, partition)
when that was opened for the same input versions and not cancelled (so a resumed run
never asks again), or opens a new one. It waits in process up to the asset's ``hold``,
and suspends the asset (``fs.Suspended``) while the gate stays open. A closed gate is
applied: the body runs with the signal or approval (under the asset's own ``timeout=``),
or the asset fails or is skipped as the rejection or timeout says.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from typing import TYPE_CHECKING, Any

from flowstone import InvalidAssetError, SkipAsset, Suspended
from flowstone.protocols import GateStatus

from ._errors import ApprovalRejectedError, GateClosedError, GateTimeoutError
from ._service import GateService, SecretInput, inputs_digest
from ._spec import GateSpec
from ._types import Approval, Signal

if TYPE_CHECKING:
    from flowstone import Runtime
    from flowstone.protocols import GateRecord, Invocation

__all__ = ["GateCoordinator"]


class GateCoordinator:
    """Executes gate assets (``@gates.signal``, ``@gates.approval``); the ``"gate"`` kind.

    Registered by default with no secret of its own (``FLOWSTONE_GATE_SECRET``, or a
    random one with the in-memory gate store); :func:`flowstone.ext.gates.install`
    registers one with the secrets given. One coordinator serves each runtime it is
    registered on with a :class:`GateService` of that runtime's own.

    :param secret: the signing secret, or several (the first signs, all verify)
    """

    def __init__(self, *, secret: SecretInput | None = None) -> None:
        self._secret = secret
        self._services: weakref.WeakKeyDictionary[Runtime, GateService] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return "GateCoordinator()"

    def service(self, runtime: Runtime) -> GateService:
        """The gate service of ``runtime`` (made on first use)."""
        service = self._services.get(runtime)
        if service is None:
            service = self._services[runtime] = GateService(runtime, self._secret)
        return service

    async def execute(self, invocation: Invocation) -> Any:
        """Open or find the gate, wait up to ``hold``, then suspend or apply it.

        :raises Suspended: the gate is still open
        :raises ApprovalRejectedError: rejected, with ``on_reject="fail"``
        :raises GateTimeoutError: expired, with ``on_timeout="fail"``
        :raises GateClosedError: the gate was cancelled
        """
        asset = invocation.asset
        spec = asset.kind_spec
        if not isinstance(spec, GateSpec):
            raise InvalidAssetError(asset.name, f"the gate coordinator got a {asset.kind!r} asset")
        service = self.service(invocation.run.runtime)
        ctx = invocation.context
        inputs = inputs_digest(invocation.input_versions)
        gate = await service.store.latest(ctx.run_id, asset.name, ctx.partition)
        opened = (
            gate is None
            or gate.metadata.get("inputs") != inputs
            or gate.status is (GateStatus.CANCELLED)
        )
        if opened:
            gate = await service.open(
                spec, run_id=ctx.run_id, asset=asset.name, partition=ctx.partition, inputs=inputs
            )
        assert gate is not None
        gate = await service.wait(gate, spec.hold, just_opened=opened)
        if gate.status.open:
            what = f"{gate.kind} gate {gate.gate_id} open"
            raise Suspended(
                what,
                since=gate.created_at,
                until=gate.expires_at,
                metadata={"gate_id": gate.gate_id, "gate_kind": gate.kind},
            )
        return await self._apply(invocation, spec, gate)

    async def _apply(self, invocation: Invocation, spec: GateSpec, gate: GateRecord) -> Any:
        name = invocation.asset.name
        status = gate.status
        decided = gate.resolved_at or gate.created_at
        if status is GateStatus.SIGNALLED:
            return await self._body(
                invocation, Signal(payload=gate.payload, received_at=decided, gate_id=gate.gate_id)
            )
        if status is GateStatus.APPROVED:
            return await self._body(
                invocation,
                Approval(
                    approved=True,
                    by=gate.resolved_by,
                    reason=gate.reason,
                    payload=gate.payload,
                    decided_at=decided,
                    gate_id=gate.gate_id,
                ),
            )
        if status is GateStatus.REJECTED:
            self._reject(spec, name, gate, gate.resolved_by, gate.reason)
        if status is GateStatus.CANCELLED:
            raise GateClosedError(gate.gate_id, f"was cancelled: {gate.reason or 'no reason'}")
        # Expired: the asset's on_timeout decides.
        action = spec.on_timeout
        if action == "skip":
            raise SkipAsset(f"{gate.kind} gate {gate.gate_id} timed out")
        if action == "reject":
            self._reject(spec, name, gate, None, "timed out")
        if action == "approve":
            return await self._body(
                invocation,
                Approval(
                    approved=True,
                    by=None,
                    reason="approved on timeout",
                    payload=None,
                    decided_at=decided,
                    gate_id=gate.gate_id,
                ),
            )
        raise GateTimeoutError(name, gate.gate_id, spec.timeout)

    @staticmethod
    def _reject(
        spec: GateSpec, name: str, gate: GateRecord, by: str | None, reason: str | None
    ) -> None:
        if spec.on_reject == "skip":
            who = f"by {by}" if by is not None else "by its timeout"
            raise SkipAsset(f"rejected {who}" + (f": {reason}" if reason else ""))
        raise ApprovalRejectedError(name, gate.gate_id, by, reason)

    @staticmethod
    async def _body(invocation: Invocation, decision: Signal | Approval) -> Any:
        """Call the body with the decision, under the asset's own ``timeout=``."""
        asset = invocation.asset
        param = "signal" if isinstance(decision, Signal) else "approval"
        extra = {param: decision} if param in inspect.signature(asset.fn).parameters else {}
        call = functools.partial(invocation.call, **extra)
        return await invocation.within_timeout(call, asset.timeout)
