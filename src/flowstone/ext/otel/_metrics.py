"""The sink's instruments, made once per sink.

Counting is the hot path (a few per asset), so the counters are asynchronous: the sink adds
to plain dictionaries and the SDK reads their cumulative values when it collects (an
observable counter reports the total so far, which is what a synchronous counter's
cumulative sum would be). The duration histogram is synchronous (there is no observable
histogram); its label sets are made once per asset and outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.metrics import Observation

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from opentelemetry.metrics import CallbackOptions, Histogram, Meter

__all__ = ["Instruments", "Labels"]

#: The label set of one series, as a sorted tuple of (name, value) pairs.
Labels = tuple[tuple[str, str], ...]


def _reader(counts: dict[Labels, int]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(labels)) for labels, value in list(counts.items())]

    return observe


class Instruments:
    """The five instruments of :class:`~flowstone.ext.otel.OTelSink` (see the package)."""

    __slots__ = ("_duration", "_labels", "gates", "items", "materializations", "runs")

    def __init__(self, meter: Meter) -> None:
        self.runs: dict[Labels, int] = {}
        self.materializations: dict[Labels, int] = {}
        self.items: dict[Labels, int] = {}
        self.gates: dict[Labels, int] = {(): 0}
        self._labels: dict[tuple[str, str], dict[str, str]] = {}
        meter.create_observable_counter(
            "flowstone.runs",
            callbacks=[_reader(self.runs)],
            unit="{run}",
            description="Runs that ended, by outcome",
        )
        meter.create_observable_counter(
            "flowstone.materializations",
            callbacks=[_reader(self.materializations)],
            unit="{materialization}",
            description="Asset materializations that ended, by asset and outcome",
        )
        self._duration: Histogram = meter.create_histogram(
            "flowstone.materialization.duration",
            unit="s",
            description="How long computed materializations took, by asset and outcome",
        )
        meter.create_observable_counter(
            "flowstone.scatter.items",
            callbacks=[_reader(self.items)],
            unit="{item}",
            description="Scatter items that reached a terminal state, by outcome",
        )
        meter.create_observable_up_down_counter(
            "flowstone.gates.open",
            callbacks=[_reader(self.gates)],
            unit="{gate}",
            description="Gates waiting now (opened and not yet resolved, as seen here)",
        )

    def run(self, outcome: str) -> None:
        """Count a run that ended with ``outcome``."""
        key = (("outcome", outcome),)
        self.runs[key] = self.runs.get(key, 0) + 1

    def materialization(self, asset: str, outcome: str, duration: float | None) -> None:
        """Count a materialization of ``asset`` and record its duration (when computed)."""
        key = (("asset", asset), ("outcome", outcome))
        self.materializations[key] = self.materializations.get(key, 0) + 1
        if duration is not None:
            labels = self._labels.get((asset, outcome))
            if labels is None:
                labels = self._labels[asset, outcome] = {"asset": asset, "outcome": outcome}
            self._duration.record(duration, labels)

    def item(self, outcome: str) -> None:
        """Count a scatter item that ended with ``outcome``."""
        key = (("outcome", outcome),)
        self.items[key] = self.items.get(key, 0) + 1

    def gate(self, delta: int) -> None:
        """Count a gate opening (``+1``) or closing (``-1``)."""
        self.gates[()] += delta
