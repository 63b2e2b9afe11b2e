"""The sink's instruments, made once per meter."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, Meter, UpDownCounter

__all__ = ["Instruments"]


class Instruments:
    """The five instruments of :class:`~flowstone.ext.otel.OTelSink` (see the package)."""

    __slots__ = ("duration", "gates_open", "materializations", "runs", "scatter_items")

    def __init__(self, meter: Meter) -> None:
        self.runs: Counter = meter.create_counter(
            "flowstone.runs", unit="{run}", description="Runs that ended, by outcome"
        )
        self.materializations: Counter = meter.create_counter(
            "flowstone.materializations",
            unit="{materialization}",
            description="Asset materializations that ended, by asset and outcome",
        )
        self.duration: Histogram = meter.create_histogram(
            "flowstone.materialization.duration",
            unit="s",
            description="How long computed materializations took, by asset and outcome",
        )
        self.scatter_items: Counter = meter.create_counter(
            "flowstone.scatter.items",
            unit="{item}",
            description="Scatter items that reached a terminal state, by outcome",
        )
        self.gates_open: UpDownCounter = meter.create_up_down_counter(
            "flowstone.gates.open", unit="{gate}", description="Gates waiting now"
        )
