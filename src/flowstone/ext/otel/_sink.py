"""``OTelSink``: lifecycle events as OpenTelemetry spans and metrics (see the package)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind

from flowstone import ConfigurationError
from flowstone.events import (
    AssetFailed,
    AssetRetried,
    AssetSkipped,
    AssetStarted,
    AssetSucceeded,
    AssetWaiting,
    CheckCompleted,
    RunFinished,
    RunStarted,
)
from flowstone.ext.parallel import BranchFinished, BranchStarted
from flowstone.ext.routing import RouteDecided
from flowstone.ext.scatter import (
    ScatterFinished,
    ScatterItemFinished,
    ScatterProgress,
    ScatterStarted,
)

from ._context import span_tags, stored_span_context
from ._gates import GateTracker
from ._metrics import Instruments
from ._plugin_spans import PluginSpans
from ._spans import AssetSpan, RunSpans, error_type, fail, ns

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider
    from opentelemetry.util.types import AttributeValue

    from flowstone import RunRecord
    from flowstone.events import AssetEvent, Event

__all__ = ["OTelSink"]

try:
    _VERSION = version("flowstone")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    _VERSION = "0"

_SCOPE = "flowstone"


class OTelSink(PluginSpans):
    """An event sink that records runs as OpenTelemetry spans and metrics.

    It depends on the OpenTelemetry API only and never installs a provider: without
    ``tracer_provider`` / ``meter_provider`` it uses the global ones (a no-op until the
    application installs the SDK, which it may do after making the sink). It is also a
    :class:`~flowstone.protocols.RunTagger`: each new run stores its run span's trace
    context in its tags, so a resumed run (in any process) continues the same trace.

    :param tracer_provider: where spans go (default: the global tracer provider)
    :param meter_provider: where metrics go (default: the global meter provider)
    :param item_spans: the fraction of scatter items (0 to 1) that get a span of their own,
        a zero-length mark when the item ends (its index, status and attempts, never its
        key or value); items are picked by a hash of their key, so the same items are
        picked in every run. Default 0: a scatter may have a million items
    :raises ConfigurationError: ``item_spans`` is not between 0 and 1
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        item_spans: float = 0.0,
    ) -> None:
        if (
            isinstance(item_spans, bool)
            or not isinstance(item_spans, int | float)
            or not 0.0 <= item_spans <= 1.0
        ):
            raise ConfigurationError(
                f"OTelSink(item_spans=...) is the fraction of scatter items that get a span, "
                f"between 0 and 1; got {item_spans!r}"
            )
        self.item_spans = float(item_spans)
        self._item_threshold = int(self.item_spans * 0xFFFFFFFF)
        self._tracer = trace.get_tracer(_SCOPE, _VERSION, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, _VERSION, meter_provider=meter_provider)
        self._instruments = Instruments(meter)
        self._runs: dict[str, RunSpans] = {}
        self._gates = GateTracker(self._tracer, self._instruments.gate)
        self._handlers: dict[type, Callable[[Any], None] | None] = {
            RunStarted: self._run_started,
            RunFinished: self._run_finished,
            AssetStarted: self._asset_started,
            AssetRetried: self._asset_retried,
            AssetSucceeded: self._asset_succeeded,
            AssetFailed: self._asset_failed,
            AssetSkipped: self._asset_skipped,
            AssetWaiting: self._asset_waiting,
            CheckCompleted: self._check_completed,
            ScatterStarted: self._scatter_started,
            ScatterProgress: self._scatter_progress,
            ScatterItemFinished: self._scatter_item,
            ScatterFinished: self._scatter_finished,
            BranchStarted: self._branch_started,
            BranchFinished: self._branch_finished,
            RouteDecided: self._route_decided,
        }

    def __repr__(self) -> str:
        return f"OTelSink(item_spans={self.item_spans!r})"

    # -- the RunTagger and EventSink protocols ---------------------------------------------

    def run_tags(self, run: RunRecord, stored: RunRecord | None) -> Mapping[str, str]:
        """Start the run's span and return its trace context as tags (see the class).

        A new run's span is a child of the span current in the calling task. A resumed
        run's span is a child of its first attempt's run span (kept in ``stored``'s tags),
        so it lands in the same trace, and links to it (and to the current span, if any).
        """
        base: dict[str, AttributeValue] = {"flowstone.run.id": run.run_id}
        if run.pipeline:
            base["flowstone.pipeline"] = run.pipeline
        attributes = dict(base)
        if run.partition is not None:
            attributes["flowstone.partition"] = run.partition
        parent = None
        links: list[Link] = []
        if stored is not None:
            attributes["flowstone.run.resumed"] = True
            earlier = stored_span_context(stored.tags)
            if earlier is not None:
                parent = trace.set_span_in_context(NonRecordingSpan(earlier))
                links.append(Link(earlier, {"flowstone.link": "earlier attempt"}))
                current = trace.get_current_span().get_span_context()
                if current.is_valid:
                    links.append(Link(current, {"flowstone.link": "resumed by"}))
        span = self._tracer.start_span(
            "flowstone.run",
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=links,
        )
        self._runs[run.run_id] = RunSpans(span, stored is not None, base)
        return span_tags(span) if stored is None else {}

    def emit(self, event: Event) -> None:
        """Turn one lifecycle event into spans, span events and metrics."""
        kind = type(event)
        try:
            handler = self._handlers[kind]
        except KeyError:
            handler = self._handlers[kind] = self._handler_for(kind)
        if handler is not None:
            handler(event)

    def _handler_for(self, kind: type) -> Callable[[Any], None] | None:
        """The handler of a subclass of a known event, or the gate hook for gate events."""
        for base in kind.__mro__[1:]:
            handler = self._handlers.get(base)
            if handler is not None:
                return handler
        if GateTracker.handles(kind):
            return self._gate
        return None

    # -- runs ------------------------------------------------------------------------------

    def _run_started(self, event: RunStarted) -> None:
        state = self._runs.get(event.run_id)
        if state is None:  # not tagged (a sink added while the run was starting)
            base: dict[str, AttributeValue] = {"flowstone.run.id": event.run_id}
            span = self._tracer.start_span(
                "flowstone.run", attributes=base, start_time=ns(event.timestamp)
            )
            state = self._runs[event.run_id] = RunSpans(span, event.resumed, base)
        state.resumed = event.resumed
        state.span.set_attribute("flowstone.run.resumed", event.resumed)
        state.span.set_attribute("flowstone.selection", list(event.selection))

    def _run_finished(self, event: RunFinished) -> None:
        state = self._runs.pop(event.run_id, None)
        if state is None:
            return
        end = ns(event.timestamp)
        for (asset, _), open_asset in state.assets.items():
            state.asset_span(self._tracer, asset, open_asset)
        for span in state.open_spans():  # a cancelled run leaves some open
            span.set_attribute("flowstone.status", "cancelled")
            span.end(end_time=end)
        self._gates.run_finished(event.run_id, end)
        span = state.span
        span.set_attribute("flowstone.status", event.status)
        span.set_attribute("flowstone.assets.succeeded", len(event.succeeded))
        span.set_attribute("flowstone.assets.failed", len(event.failed))
        span.set_attribute("flowstone.assets.skipped", len(event.skipped))
        if event.waiting:
            span.set_attribute("flowstone.assets.waiting", len(event.waiting))
        if event.status not in ("succeeded", "waiting"):  # a waiting run did not fail
            fail(span, None, state.first_error or event.status, event.timestamp)
        span.end(end_time=end)
        self._instruments.run(event.status)

    # -- assets ----------------------------------------------------------------------------

    def _asset_started(self, event: AssetStarted) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        key = (event.asset, event.partition)
        open_asset = state.assets.get(key)
        if open_asset is not None:  # the next attempt
            open_asset.attributes["flowstone.attempt"] = event.attempt
            if open_asset.span is not None:
                open_asset.span.set_attribute("flowstone.attempt", event.attempt)
            return
        attributes = state.attributes(event.asset, event.partition)
        attributes["flowstone.attempt"] = event.attempt
        if event.kind != "asset":
            attributes["flowstone.asset.kind"] = event.kind
        state.assets[key] = AssetSpan(event.timestamp, attributes)

    def _asset_retried(self, event: AssetRetried) -> None:
        state = self._runs.get(event.run_id)
        span = None if state is None else self._open_asset_span(state, event.asset, event.partition)
        if span is None:
            return
        span.add_event(
            "flowstone.retry",
            {
                "flowstone.attempt": event.attempt,
                "flowstone.retry.delay": event.delay,
                "error.type": error_type(event.error),
            },
            timestamp=ns(event.timestamp),
        )

    def _check_completed(self, event: CheckCompleted) -> None:
        """A check's result, as a ``flowstone.check`` event of the run's span (the asset's
        span has ended by then)."""
        state = self._runs.get(event.run_id)
        if state is None:
            return
        attributes = state.attributes(event.asset, event.partition)
        attributes.update(
            {
                "flowstone.check": event.check,
                "flowstone.check.severity": event.severity,
                "flowstone.check.passed": event.passed,
                "flowstone.check.duration": event.duration,
            }
        )
        if event.error is not None:
            attributes["error.type"] = event.error.split(":", 1)[0]
        state.span.add_event("flowstone.check", attributes, timestamp=ns(event.timestamp))

    def _ended(
        self, state: RunSpans, event: AssetEvent, end: Mapping[str, AttributeValue]
    ) -> tuple[Span, float]:
        """The ended asset's span with the attributes ``end`` (made now, with them, for one
        whose span was not needed while it ran, or that never started) and its start time."""
        open_asset = state.assets.pop((event.asset, event.partition), None)
        if open_asset is None:  # it never started (skipped, say)
            open_asset = AssetSpan(event.timestamp, state.attributes(event.asset, event.partition))
        if open_asset.span is None:
            open_asset.attributes.update(end)
            return state.asset_span(self._tracer, event.asset, open_asset), open_asset.started
        open_asset.span.set_attributes(end)
        return open_asset.span, open_asset.started

    def _asset_succeeded(self, event: AssetSucceeded) -> None:
        state = self._runs.get(event.run_id)
        if state is None or (event.reused and state.resumed):
            return  # a resumed run's earlier work was emitted by the earlier attempt
        attributes: dict[str, AttributeValue] = {
            "flowstone.status": "succeeded",
            "flowstone.reused": event.reused,
        }
        if event.data_version is not None:
            attributes["flowstone.data_version"] = event.data_version
        span, _ = self._ended(state, event, attributes)
        span.end(end_time=ns(event.timestamp))
        if event.reused:
            self._instruments.materialization(event.asset, "reused", None)
        else:
            self._instruments.materialization(event.asset, "succeeded", event.duration)

    def _asset_failed(self, event: AssetFailed) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        span, started = self._ended(
            state, event, {"flowstone.status": "failed", "flowstone.attempt": event.attempt}
        )
        fail(span, event.error, "failed", event.timestamp)
        if state.first_error is None:
            state.first_error = error_type(event.error)
        span.end(end_time=ns(event.timestamp))
        duration = max(event.timestamp - started, 0.0)
        self._instruments.materialization(event.asset, "failed", duration)

    def _asset_skipped(self, event: AssetSkipped) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        span, _ = self._ended(
            state, event, {"flowstone.status": "skipped", "flowstone.skip.reason": event.reason}
        )
        span.end(end_time=ns(event.timestamp))
        self._instruments.materialization(event.asset, "skipped", None)

    def _asset_waiting(self, event: AssetWaiting) -> None:
        state = self._runs.get(event.run_id)
        if state is None:
            return
        span, _ = self._ended(
            state, event, {"flowstone.status": "waiting", "flowstone.wait.reason": event.reason}
        )
        span.end(end_time=ns(event.timestamp))
