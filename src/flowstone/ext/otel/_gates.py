"""The gate hook: the gates plugin's events as gate-wait spans and ``flowstone.gates.open``.

:class:`~flowstone.ext.gates.GateOpened` opens a gate; :class:`~flowstone.ext.gates.GateResolved`
(signalled, approved, rejected), :class:`~flowstone.ext.gates.GateExpired` and
:class:`~flowstone.ext.gates.GateCancelled` close it. A gate is counted once however often
it is reported open, and only gates seen opening are counted down, so the counter never
goes negative in one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace

from flowstone.ext.gates import GateCancelled, GateEvent, GateExpired, GateOpened, GateResolved

from ._spans import ns

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    from flowstone.events import Event

__all__ = ["GateTracker"]


class GateTracker:
    """The open gates one sink has seen: their wait spans and the up-down counter."""

    def __init__(self, tracer: Tracer, counter: Callable[[int], None]) -> None:
        self._tracer = tracer
        self._counter = counter
        self._open: dict[str, tuple[str, Span | None]] = {}

    @staticmethod
    def handles(kind: type) -> bool:
        """Whether events of class ``kind`` are gate events."""
        return issubclass(kind, GateEvent)

    @staticmethod
    def opens(event: Event) -> bool | None:
        """``True`` when ``event`` opens its gate, ``False`` when it closes it, else ``None``."""
        if isinstance(event, GateOpened):
            return True
        if isinstance(event, GateResolved | GateExpired | GateCancelled):
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
        assert isinstance(event, GateEvent)
        asset = event.asset
        gate_id = event.gate_id
        at = ns(event.timestamp)
        if opens:
            if gate_id in self._open:
                return
            self._counter(1)
            span = None
            if parent is not None:
                attributes = dict(base or {})
                attributes["flowstone.asset"] = asset
                attributes["flowstone.gate.kind"] = event.kind
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
            if isinstance(event, GateResolved):
                status = event.status
            else:
                status = "expired" if isinstance(event, GateExpired) else "cancelled"
            span.set_attribute("flowstone.gate.status", status)
            span.end(end_time=at)

    def run_finished(self, run_id: str, end: int) -> None:
        """End the wait spans of ``run_id``'s gates (the run stopped while they wait; they
        stay counted as open until an event closes them)."""
        for gate_id, (owner, span) in list(self._open.items()):
            if owner == run_id and span is not None:
                span.set_attribute("flowstone.gate.status", "waiting")
                span.end(end_time=end)
                self._open[gate_id] = (owner, None)
