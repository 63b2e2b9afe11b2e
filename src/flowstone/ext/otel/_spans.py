"""What the sink keeps per run: its span, its open asset, scatter, branch and gate spans."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

__all__ = ["AssetKey", "RunSpans", "error_type", "fail", "ns"]

#: An asset of a run: ``(asset, partition)``.
AssetKey = tuple[str, "str | None"]


def ns(timestamp: float) -> int:
    """An event's ``time.time()`` seconds as OpenTelemetry's nanoseconds."""
    return int(timestamp * 1e9)


def error_type(error: BaseException) -> str:
    """``error.type`` of a failure: the type of what the asset raised, not of its wrapper."""
    inner: Any = getattr(error, "error", None)
    if isinstance(inner, BaseException):
        error = inner
    return type(error).__qualname__


def fail(span: Span, error: BaseException | None, kind: str, timestamp: float) -> None:
    """Mark ``span`` failed: status ``ERROR``, ``error.type`` and the recorded exception."""
    span.set_attribute("error.type", error_type(error) if error is not None else kind)
    if error is not None:
        span.record_exception(error, timestamp=ns(timestamp))
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    else:
        span.set_status(Status(StatusCode.ERROR, kind))


@dataclass(slots=True)
class AssetSpan:
    """A started asset: when its first attempt started (``time.time()`` seconds), its latest
    attempt and the attributes its span starts with.

    The span itself is made only when something needs it — a child (scatter, branch, gate),
    a span event (retry, route) or the asset's end — and is started at ``started`` then: an
    asset that simply runs and ends costs the SDK one span made with all its attributes at
    once, instead of a span made at the start and attributes set again at the end.
    """

    started: float
    attributes: dict[str, AttributeValue]
    span: Span | None = None


@dataclass(slots=True)
class RunSpans:
    """One run's spans, while it runs.

    :ivar resumed: the run was resumed: what it reuses from before is not emitted again
    :ivar base: the attributes every span of the run carries (run id, pipeline)
    """

    span: Span
    resumed: bool
    base: dict[str, AttributeValue]
    assets: dict[AssetKey, AssetSpan] = field(default_factory=dict)
    scatters: dict[AssetKey, Span] = field(default_factory=dict)
    branches: dict[tuple[str, str | None, str], Span] = field(default_factory=dict)
    first_error: str | None = None
    context: Context = field(init=False)

    def __post_init__(self) -> None:
        self.context = trace.set_span_in_context(self.span)

    def attributes(self, asset: str, partition: str | None) -> dict[str, AttributeValue]:
        """The attributes of a span of an asset of the run: the run's id (the pipeline is on
        the run's span), the asset and its partition."""
        attributes: dict[str, AttributeValue] = {"flowstone.run.id": self.base["flowstone.run.id"]}
        attributes["flowstone.asset"] = asset
        if partition is not None:
            attributes["flowstone.partition"] = partition
        return attributes

    def open_spans(self) -> list[Span]:
        """Every span still open under the run, innermost first."""
        return [
            *self.branches.values(),
            *self.scatters.values(),
            *(asset.span for asset in self.assets.values() if asset.span is not None),
        ]

    def asset_span(self, tracer: Tracer, asset: str, started: AssetSpan) -> Span:
        """``started``'s span, made now (started when the asset started) if not made yet."""
        span = started.span
        if span is None:
            span = started.span = tracer.start_span(
                f"flowstone.materialize {asset}",
                context=self.context,
                attributes=started.attributes,
                start_time=ns(started.started),
            )
        return span
