"""The gate hook: gate events (from any plugin) as gate-wait spans and ``flowstone.gates.open``.

No gate events are declared by flowstone yet, so the sink recognises them by shape, not by
class: an event whose class name starts with ``Gate`` is a gate event. It identifies its
gate by a ``gate_id`` attribute (else by run, asset and partition). It **opens** the gate
when its ``status`` attribute is ``"waiting"`` (:class:`~flowstone.GateStatus`) or, without
a ``status``, when its class name ends in ``Opened``, ``Created``, ``Waiting`` or
``Suspended``; any other ``status`` (``approved``, ``rejected``, ``signalled``,
``expired``), or a name ending in ``Resolved``, ``Closed``, ``Approved``, ``Rejected``,
``Signalled``, ``Expired``, ``Cancelled`` or ``TimedOut``, **closes** it. Other gate events
are ignored. A gate is counted once however often it is reported open, and only gates seen
opening are counted down, so the counter never goes negative in one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

from ._spans import ns

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    from flowstone.events import Event

__all__ = ["GateTracker"]

_OPENS = ("Opened", "Created", "Waiting", "Suspended")
_CLOSES = (
    "Resolved",
    "Closed",
    "Approved",
    "Rejected",
    "Signalled",
    "Expired",
    "Cancelled",
    "TimedOut",
)


class GateTracker:
    """The open gates one sink has seen: their wait spans and the up-down counter."""

    def __init__(self, tracer: Tracer, counter: Callable[[int], None]) -> None:
        self._tracer = tracer
        self._counter = counter
        self._open: dict[str, tuple[str, Span | None]] = {}

    @staticmethod
    def handles(kind: type) -> bool:
        """Whether events of class ``kind`` are gate events (see the module)."""
        return kind.__name__.startswith("Gate")

    @staticmethod
    def opens(event: Event) -> bool | None:
        """``True`` when ``event`` opens its gate, ``False`` when it closes it, else ``None``."""
        status = getattr(event, "status", None)
        if status is not None:
            return str(status) == "waiting"
        name = type(event).__name__
        if name.endswith(_OPENS):
            return True
        if name.endswith(_CLOSES):
            return False
        return None

    def emit(
        self,
        event: Event,
        parent: Span | None,
        base: Mapping[str, AttributeValue] | None,
    ) -> None:
        """Count ``event``'s gate up or down and open or end its wait span."""
        opens = self.opens(event)
        if opens is None:
            return
        asset = getattr(event, "asset", None)
        gate_id = getattr(event, "gate_id", None)
        if not isinstance(gate_id, str):
            gate_id = f"{event.run_id}/{asset}/{getattr(event, 'partition', None)}"
        at = ns(event.timestamp)
        if opens:
            if gate_id in self._open:
                return
            self._counter(1)
            span = None
            if parent is not None:
                attributes = dict(base or {})
                if isinstance(asset, str):
                    attributes["flowstone.asset"] = asset
                kind = getattr(event, "kind", None)
                if isinstance(kind, str):
                    attributes["flowstone.gate.kind"] = kind
                span = self._tracer.start_span(
                    f"flowstone.gate {asset}",
                    context=trace.set_span_in_context(parent),
                    attributes=attributes,
                    start_time=at,
                )
            self._open[gate_id] = (event.run_id, span)
            return
        known = self._open.pop(gate_id, None)
        if known is None:
            return
        self._counter(-1)
        _, span = known
        if span is not None:
            status = getattr(event, "status", None)
            span.set_attribute("flowstone.gate.status", str(status or type(event).__name__))
            span.end(end_time=at)

    def run_finished(self, run_id: str, end: int) -> None:
        """End the wait spans of ``run_id``'s gates (the run stopped while they wait; they
        stay counted as open until an event closes them)."""
        for gate_id, (owner, span) in list(self._open.items()):
            if owner == run_id and span is not None:
                span.set_attribute("flowstone.gate.status", "waiting")
                span.end(end_time=end)
                self._open[gate_id] = (owner, None)
