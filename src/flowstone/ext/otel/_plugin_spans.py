"""The spans and span events of the plugins' events: scatter, parallel branches, route
decisions and gates, under the span of the asset they belong to (a part of ``OTelSink``)."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from opentelemetry import trace

from flowstone import Status

from ._spans import error_type, fail, ns

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    from flowstone.events import AssetEvent, Event
    from flowstone.ext.parallel import BranchFinished, BranchStarted
    from flowstone.ext.routing import RouteDecided
    from flowstone.ext.scatter import (
        ScatterFinished,
        ScatterItemFinished,
        ScatterProgress,
        ScatterStarted,
    )

    from ._gates import GateTracker
    from ._metrics import Instruments
    from ._spans import RunSpans

__all__ = ["PluginSpans"]


class PluginSpans:
    """Scatter, branch, route and gate handlers of :class:`~._sink.OTelSink` (its base;
    the sink builds the state)."""

    _tracer: Tracer
    _instruments: Instruments
    _runs: dict[str, RunSpans]
    _gates: GateTracker
    _item_threshold: int

    def _open_asset_span(self, state: RunSpans, asset: str, partition: str | None) -> Span | None:
        """The span of a started asset of the run (made now if not yet), or ``None``."""
        open_asset = state.assets.get((asset, partition))
        if open_asset is None:
            return None
        return state.asset_span(self._tracer, asset, open_asset)

    def _parent_of(self, state: RunSpans, event: AssetEvent) -> Span:
        """The span of ``event``'s asset if it is open, else the run's."""
        span = self._open_asset_span(state, event.asset, event.partition)
        return span if span is not None else state.span

    # -- scatter ---------------------------------------------------------------------------

    def _scatter_started(self, event: ScatterStarted) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        attributes = state.attributes(event.asset, event.partition)
        attributes["flowstone.scatter.max_concurrent"] = event.max_concurrent
        attributes["flowstone.scatter.batched"] = event.batched
        if event.total is not None:
            attributes["flowstone.scatter.total"] = event.total
        state.scatters[event.asset, event.partition] = self._tracer.start_span(
            f"flowstone.scatter {event.asset}",
            context=trace.set_span_in_context(self._parent_of(state, event)),
            attributes=attributes,
            start_time=ns(event.timestamp),
        )

    def _scatter_progress(self, event: ScatterProgress) -> None:
        state = self._runs.get(event.run_id)
        span = None if state is None else state.scatters.get((event.asset, event.partition))
        if span is not None:
            span.set_attribute("flowstone.scatter.done", event.done)
            span.set_attribute("flowstone.scatter.failed", event.failed)

    def _scatter_item(self, event: ScatterItemFinished) -> None:
        self._instruments.item(event.status.value)
        if not self._item_threshold or zlib.crc32(event.key.encode()) > self._item_threshold:
            return
        state = self._runs.get(event.run_id)
        parent = None if state is None else state.scatters.get((event.asset, event.partition))
        if state is None or parent is None:
            return
        attributes = state.attributes(event.asset, event.partition)
        attributes["flowstone.scatter.index"] = event.index
        attributes["flowstone.status"] = event.status.value
        attributes["flowstone.attempts"] = event.attempts
        at = ns(event.timestamp)
        span = self._tracer.start_span(
            f"flowstone.scatter.item {event.asset}",
            context=trace.set_span_in_context(parent),
            attributes=attributes,
            start_time=at,
        )
        if event.status is Status.FAILED:
            fail(span, None, "item failed", event.timestamp)
        span.end(end_time=at)

    def _scatter_finished(self, event: ScatterFinished) -> None:
        state = self._runs.get(event.run_id)
        span = None if state is None else state.scatters.pop((event.asset, event.partition), None)
        if span is None:
            return
        span.set_attribute("flowstone.status", event.status)
        span.set_attribute("flowstone.scatter.total", event.total)
        span.set_attribute("flowstone.scatter.succeeded", event.succeeded)
        span.set_attribute("flowstone.scatter.failed", event.failed)
        span.set_attribute("flowstone.scatter.retried", event.retried)
        if event.status != "succeeded":
            fail(span, None, f"scatter {event.status}", event.timestamp)
        span.end(end_time=ns(event.timestamp))

    # -- parallel, routing, gates ----------------------------------------------------------

    def _branch_started(self, event: BranchStarted) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        attributes = state.attributes(event.asset, event.partition)
        attributes["flowstone.branch"] = event.branch
        attributes["flowstone.branch.final"] = event.final
        attributes["flowstone.branch.required"] = event.required
        state.branches[event.asset, event.partition, event.branch] = self._tracer.start_span(
            f"flowstone.branch {event.branch}",
            context=trace.set_span_in_context(self._parent_of(state, event)),
            attributes=attributes,
            start_time=ns(event.timestamp),
        )

    def _branch_finished(self, event: BranchFinished) -> None:
        state = self._runs.get(event.run_id)
        key = (event.asset, event.partition, event.branch)
        span = None if state is None else state.branches.pop(key, None)
        if span is None:
            return
        span.set_attribute("flowstone.status", event.status)
        if event.reason is not None:
            span.set_attribute("flowstone.skip.reason", event.reason)
        if event.status == "failed":
            fail(span, event.error, "branch failed", event.timestamp)
        span.end(end_time=ns(event.timestamp))

    def _route_decided(self, event: RouteDecided) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        attributes: dict[str, AttributeValue] = {
            "flowstone.asset": event.asset,
            "flowstone.route.via": event.via,
            "flowstone.reused": event.reused,
        }
        if event.chosen is not None:
            attributes["flowstone.route.chosen"] = event.chosen
        if event.error is not None:
            attributes["error.type"] = error_type(event.error)
        self._parent_of(state, event).add_event(
            "flowstone.route", attributes, timestamp=ns(event.timestamp)
        )

    def _gate(self, event: Event) -> None:
        state = self._runs.get(event.run_id)
        parent = None
        asset = getattr(event, "asset", None)
        if state is not None and isinstance(asset, str):
            parent = self._open_asset_span(state, asset, getattr(event, "partition", None))
            if parent is None:
                parent = state.span
        self._gates.emit(event, parent, None if state is None else state.base)
