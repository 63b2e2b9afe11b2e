"""A run's trace context, kept in its record's tags (W3C Trace Context)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.trace import Span, SpanContext

__all__ = ["TRACEPARENT_TAG", "TRACESTATE_TAG", "span_tags", "stored_span_context"]

#: The run-record tag holding the first attempt's run span as a W3C ``traceparent``.
TRACEPARENT_TAG = "flowstone.traceparent"
#: The run-record tag holding its W3C ``tracestate``, when there is one.
TRACESTATE_TAG = "flowstone.tracestate"

_propagator = TraceContextTextMapPropagator()


def span_tags(span: Span) -> dict[str, str]:
    """The tags that keep ``span``'s context (nothing for a span that is not valid)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    tags: dict[str, str] = {}
    if "traceparent" in carrier:
        tags[TRACEPARENT_TAG] = carrier["traceparent"]
    if carrier.get("tracestate"):
        tags[TRACESTATE_TAG] = carrier["tracestate"]
    return tags


def stored_span_context(tags: Mapping[str, str]) -> SpanContext | None:
    """The span context kept in ``tags``, or ``None`` when there is none (or it is invalid)."""
    traceparent = tags.get(TRACEPARENT_TAG)
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tags.get(TRACESTATE_TAG):
        carrier["tracestate"] = tags[TRACESTATE_TAG]
    context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    return context if context.is_valid else None
