"""What a scatter reports while it runs: events to the sinks, and an optional progress bar.

Per-item events are built only when the runtime has event sinks. Progress is reported by
a ticker about twice a second (and once at the end), never once per item, so a scatter of
a million trivial items pays nothing per item for it. ``progress=True`` draws a
``tqdm.auto`` bar (a terminal or notebook widget); tqdm comes with the ``progress`` extra
and is imported only then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstone import MissingExtraError, Status

from ._events import ScatterFinished, ScatterItemFinished, ScatterProgress, ScatterStarted
from ._summary import error_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowstone.events import Event

    from ._summary import ScatterSummary

__all__ = ["PROGRESS_INTERVAL", "ScatterReporter", "load_tqdm"]

#: Seconds between progress reports.
PROGRESS_INTERVAL = 0.5


def load_tqdm() -> Any:
    """Import ``tqdm.auto.tqdm``.

    :raises MissingExtraError: tqdm is not installed (``pip install 'flowstone[progress]'``)
    """
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise MissingExtraError("flowstone.ext.scatter progress bar", "tqdm", "progress") from exc
    return tqdm


class ScatterReporter:
    """Sends one scatter's events and draws its bar.

    :param emit: where events go (``None``: nowhere)
    :param per_item: whether to send :class:`ScatterItemFinished` for every item
    :param bar: whether to draw a progress bar
    :param run_id: the run's id (``""`` outside a run)
    :param asset: the asset's name
    :param partition: the partition key
    :raises MissingExtraError: ``bar`` is set and tqdm is not installed
    """

    __slots__ = ("_bar", "_bar_cls", "_emit", "asset", "partition", "per_item", "run_id")

    def __init__(
        self,
        *,
        emit: Callable[[Event], None] | None,
        per_item: bool,
        bar: bool,
        run_id: str,
        asset: str,
        partition: str | None,
    ) -> None:
        self._emit = emit
        self.per_item = per_item and emit is not None
        self._bar_cls = load_tqdm() if bar else None
        self._bar: Any = None
        self.run_id = run_id
        self.asset = asset
        self.partition = partition

    @property
    def active(self) -> bool:
        """Whether progress is reported at all (events or a bar)."""
        return self._emit is not None or self._bar_cls is not None

    def started(self, total: int | None, max_concurrent: int, batched: bool) -> None:
        """The scatter started."""
        if self._bar_cls is not None:
            self._bar = self._bar_cls(total=total, desc=self.asset, unit="item", leave=True)
        if self._emit is not None:
            self._emit(
                ScatterStarted(
                    run_id=self.run_id,
                    asset=self.asset,
                    partition=self.partition,
                    total=total,
                    max_concurrent=max_concurrent,
                    batched=batched,
                )
            )

    def item(
        self, index: int, key: str, ok: bool, attempts: int, error: BaseException | None
    ) -> None:
        """One item ended (call only when :attr:`per_item`)."""
        assert self._emit is not None
        self._emit(
            ScatterItemFinished(
                run_id=self.run_id,
                asset=self.asset,
                partition=self.partition,
                key=key,
                index=index,
                status=Status.SUCCEEDED if ok else Status.FAILED,
                attempts=attempts,
                error=None if error is None else error_text(error),
            )
        )

    def progress(self, done: int, total: int | None, failed: int) -> None:
        """Report the counts now."""
        bar = self._bar
        if bar is not None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            if done > bar.n:
                bar.update(done - bar.n)
        if self._emit is not None:
            self._emit(
                ScatterProgress(
                    run_id=self.run_id,
                    asset=self.asset,
                    partition=self.partition,
                    done=done,
                    total=total,
                    failed=failed,
                )
            )

    def finished(self, status: str, summary: ScatterSummary) -> None:
        """The scatter ended with ``status`` (``succeeded``, ``failed``, ``cancelled``)."""
        self.close()
        if self._emit is not None:
            self._emit(
                ScatterFinished(
                    run_id=self.run_id,
                    asset=self.asset,
                    partition=self.partition,
                    status=status,
                    total=summary.total,
                    succeeded=summary.succeeded,
                    failed=summary.failed,
                    retried=summary.retried,
                    duration=summary.duration,
                )
            )

    def close(self) -> None:
        """Close the bar, if one is drawn."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
