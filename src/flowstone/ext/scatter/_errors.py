"""The errors a scatter raises on purpose.

``ScatterFailureThresholdExceeded`` ends a scatter whose failed items passed
``tolerated_failure``; ``DuplicateScatterKeyError`` stops one whose source yields a key twice;
``ItemTimeoutError`` is recorded for an item attempt that ran past its ``timeout``;
``BatchResultError`` is recorded for a batch whose function returned the wrong shape;
``InvalidBatchError`` is raised by ``Batch(...)`` for an option that cannot work;
``BarrierCancelledError`` ends a scatter whose barrier was cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone import AssetExecutionError, DefinitionError, ExecutionError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BarrierCancelledError",
    "BarrierLeaseLostError",
    "BatchResultError",
    "DuplicateScatterKeyError",
    "InvalidBatchError",
    "ItemTimeoutError",
    "ScatterFailureThresholdExceeded",
]


def _where(asset: str, partition: str | None) -> str:
    return f"asset {asset!r}" + (f" partition {partition!r}" if partition is not None else "")


class ScatterFailureThresholdExceeded(AssetExecutionError):
    """More items failed than ``tolerated_failure`` allows; the scatter was stopped.

    In-flight items were cancelled and no new item started. The counts are those at the
    moment the threshold was crossed.

    :param asset: the scatter asset's name (``"scatter_map"`` outside a pipeline)
    :param partition: the partition key, or ``None``
    :param total: the number of items in the source, or the number seen so far when the
        source had not been read to its end
    :param succeeded: items that succeeded
    :param failed: items that failed (after their retries)
    :param first_errors: ``(key, "Type: message")`` of the first failures, in the order
        they failed
    :param run_id: the run's id (``None`` outside a run)
    :param attempt: the asset's attempt
    :param tolerated: the ``tolerated_failure`` setting that was exceeded
    """

    def __init__(
        self,
        asset: str,
        partition: str | None,
        total: int,
        succeeded: int,
        failed: int,
        first_errors: Sequence[tuple[str, str]],
        *,
        run_id: str | None = None,
        attempt: int = 1,
        tolerated: int | float = 0,
    ) -> None:
        self.total = total
        self.succeeded = succeeded
        self.failed = failed
        self.first_errors = tuple(first_errors)
        self.tolerated = tolerated
        limit = f"{tolerated:g} of the items" if isinstance(tolerated, float) else f"{tolerated}"
        shown = "; ".join(f"{key!r}: {error}" for key, error in self.first_errors[:3])
        more = f" (and {failed - 3} more)" if failed > 3 else ""
        detail = f"{failed} of {total} items failed, more than the tolerated {limit}" + (
            f"; first errors: {shown}{more}" if shown else ""
        )
        # AssetExecutionError's constructor builds a run-centred message; this one leads
        # with the counts, so the fields are set here and the message built directly.
        self.asset = asset
        self.partition = partition
        self.run_id = run_id or ""
        self.attempt = attempt
        self.error = detail
        ExecutionError.__init__(self, f"{_where(asset, partition)}: scatter stopped: {detail}")


class DuplicateScatterKeyError(ExecutionError, ValueError):
    """Two items of one scatter have the same key; keys must be unique.

    :param asset: the scatter asset's name
    :param key: the repeated key
    :param index: the source position of the second item with that key
    :param partition: the partition key, or ``None``
    """

    def __init__(self, asset: str, key: str, index: int, partition: str | None = None) -> None:
        self.asset = asset
        self.key = key
        self.index = index
        self.partition = partition
        super().__init__(
            f"{_where(asset, partition)}: duplicate scatter key {key!r} (item at position "
            f"{index}); give key= a function that returns a unique string per item"
        )


class BarrierCancelledError(ExecutionError):
    """The scatter's barrier was cancelled (``coordinator.cancel(...)``, or
    ``BarrierStore.cancel``): no more items ran.

    :param asset: the scatter asset
    :param partition: the partition key, or ``None``
    :param reason: the reason given
    """

    def __init__(self, asset: str, partition: str | None, reason: str | None) -> None:
        self.asset = asset
        self.partition = partition
        self.reason = reason
        super().__init__(
            f"{_where(asset, partition)}: the scatter was cancelled"
            + (f": {reason}" if reason else "")
        )


class BarrierLeaseLostError(ExecutionError):
    """This process's lease on a scatter's barrier ran out before every item was terminal
    (the process was paused, or could not reach the store, for longer than the lease).

    Its items may be running elsewhere, so it stopped; what it stored is kept, and running
    the asset again (a retry, or the same ``run_id``) continues the scatter.

    :param asset: the scatter asset's name
    :param partition: the partition key, or ``None``
    """

    def __init__(self, asset: str, partition: str | None = None) -> None:
        self.asset = asset
        self.partition = partition
        super().__init__(
            f"{_where(asset, partition)}: this process's lease on the scatter's barrier ran "
            "out before every item was finished; run the asset again to continue"
        )


class ItemTimeoutError(ExecutionError, TimeoutError):
    """One attempt of a scatter item ran past the scatter's per-item ``timeout``.

    :param key: the item's key
    :param timeout: the limit, in seconds
    """

    def __init__(self, key: str, timeout: float) -> None:
        self.key = key
        self.timeout = timeout
        super().__init__(f"item {key!r} timed out after {timeout:g} s")


class BatchResultError(ExecutionError, TypeError):
    """A batch function returned something other than one result per item of the batch.

    :param batch_index: the batch's position
    :param expected: the number of items in the batch
    :param got: a description of what was returned
    """

    def __init__(self, batch_index: int, expected: int, got: str) -> None:
        self.batch_index = batch_index
        self.expected = expected
        super().__init__(
            f"batch {batch_index}: the function must return a sequence of {expected} results "
            f"(one per item, in order), got {got}"
        )


class InvalidBatchError(DefinitionError, ValueError):
    """A ``Batch(...)`` option is invalid; raised when the ``Batch`` is made.

    :param option: the option at fault (``"max_items"``, ``"size"``, …)
    :param reason: what is wrong with it
    """

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(reason)
