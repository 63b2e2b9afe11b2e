"""Batching: the ``Batch`` options and the logic that groups items into batches.

A batch is a list of ``(index, item)`` pairs; its function call receives the items, and
its results and failures are still accounted per item. :class:`Batcher` builds batches
incrementally (so streaming sources stay streaming); :func:`precompute_batches` builds them
all at once for in-memory sources and for ``batch_fn``, which sees every item.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._errors import InvalidBatchError
from ._fingerprint import callable_fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Sequence

__all__ = ["Batch", "BatchInfo", "Batcher", "Pair", "precompute_batches"]

#: One source item with its position: ``(index, item)``.
Pair = tuple[int, Any]

_ON_ITEM_ERROR = ("fail_batch", "collect_errors")


def _positive_int(value: object, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidBatchError(name, f"Batch({name}=...) must be a positive int, not {value!r}")


@dataclass(frozen=True, slots=True)
class Batch:
    """How a scatter groups items into batches; the function then receives a list of items.

    At least one of ``max_items``, ``max_bytes``, ``group_by`` or ``batch_fn`` is needed.
    The limits combine: a batch closes when it holds ``max_items`` items or when the next
    item would take it past ``max_bytes`` (an item larger than ``max_bytes`` gets a batch of
    its own). With ``group_by`` no batch mixes groups.

    :param max_items: the most items in one batch
    :param max_bytes: the most bytes in one batch, as measured by ``size``
    :param size: ``size(item) -> int``, an item's size in bytes (needed with ``max_bytes``)
    :param group_by: ``group_by(item) -> hashable``; items of one group share batches
    :param batch_fn: ``batch_fn(items) -> iterable of lists``: custom batching over *all*
        items (every item must appear in exactly one batch); the source is read completely
        first, so memory grows with the item count
    :param batch_input: a value shared by every batch, as ``ctx.batch_input``; a callable is
        called once per scatter with the mapping of dependency values by asset name
    :param on_item_error: ``"fail_batch"`` (default): the function returns one result per
        item, in order, and an exception fails every item of the batch;
        ``"collect_errors"``: the same, but an exception *instance* in the returned list
        fails only its item (retried in a smaller batch when ``retry`` allows)
    :raises InvalidBatchError: naming the option that is invalid (a ``DefinitionError``
        and a ``ValueError``)
    """

    max_items: int | None = None
    max_bytes: int | None = None
    size: Callable[[Any], int] | None = None
    group_by: Callable[[Any], Hashable] | None = None
    batch_fn: Callable[[list[Any]], Iterable[Sequence[Any]]] | None = None
    batch_input: Any = None
    on_item_error: Literal["fail_batch", "collect_errors"] = "fail_batch"

    def __post_init__(self) -> None:
        _positive_int(self.max_items, "max_items")
        _positive_int(self.max_bytes, "max_bytes")
        if self.max_bytes is not None and self.size is None:
            raise InvalidBatchError(
                "size",
                "Batch(max_bytes=...) needs size=, a function that returns an item's size in bytes",
            )
        for name in ("size", "group_by", "batch_fn"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise InvalidBatchError(name, f"Batch({name}=...) must be callable, not {value!r}")
        if not isinstance(self.on_item_error, str) or self.on_item_error not in _ON_ITEM_ERROR:
            raise InvalidBatchError(
                "on_item_error",
                f"Batch(on_item_error=...) must be 'fail_batch' or 'collect_errors', "
                f"not {self.on_item_error!r}",
            )
        if (
            self.max_items is None
            and self.max_bytes is None
            and self.group_by is None
            and self.batch_fn is None
        ):
            raise InvalidBatchError(
                "max_items", "Batch needs max_items, max_bytes, group_by or batch_fn"
            )

    @property
    def collect_errors(self) -> bool:
        """Whether per-item exceptions are collected from the returned list."""
        return self.on_item_error == "collect_errors"

    @property
    def size_hint(self) -> int:
        """A typical number of items per batch, for sizing buffers."""
        return self.max_items or 64

    def fingerprint(self) -> str:
        """A stable description of the options that change results."""
        input_print = (
            callable_fingerprint(self.batch_input)
            if callable(self.batch_input)
            else repr(self.batch_input)
        )
        return (
            f"Batch(max_items={self.max_items}, max_bytes={self.max_bytes}, "
            f"size={callable_fingerprint(self.size)}, group_by={callable_fingerprint(self.group_by)}, "
            f"batch_fn={callable_fingerprint(self.batch_fn)}, batch_input={input_print}, "
            f"on_item_error={self.on_item_error})"
        )


class BatchInfo:
    """What an item function learns about its batch: ``ctx.batch_index`` and friends.

    :param index: the batch's position (0-based), in dispatch order
    :param count: the number of batches, when known
    :param input: the shared ``batch_input`` value
    """

    __slots__ = ("count", "index", "input")

    def __init__(self, index: int, count: int | None, input: Any) -> None:
        self.index = index
        self.count = count
        self.input = input

    def __repr__(self) -> str:
        return f"BatchInfo(index={self.index}, count={self.count})"


class _Open:
    __slots__ = ("nbytes", "pairs")

    def __init__(self) -> None:
        self.pairs: list[Pair] = []
        self.nbytes = 0


_ONE_GROUP = object()


class Batcher:
    """Builds batches one item at a time (not ``batch_fn``, which needs every item).

    Open batches are kept per group in the order their first item arrived, so
    :meth:`flush_oldest` always releases the batch holding the earliest pending item.

    :param batch: the options
    """

    __slots__ = ("_group_by", "_max_bytes", "_max_items", "_open", "_size", "pending")

    def __init__(self, batch: Batch) -> None:
        self._max_items = batch.max_items
        self._max_bytes = batch.max_bytes
        self._size = batch.size
        self._group_by = batch.group_by
        self._open: dict[Hashable, _Open] = {}
        #: Items held in open batches.
        self.pending = 0

    def add(self, index: int, item: Any) -> list[list[Pair]]:
        """Add one item; return the batches that it completed (usually none or one)."""
        group = self._group_by(item) if self._group_by is not None else _ONE_GROUP
        done: list[list[Pair]] = []
        current = self._open.get(group)
        size = 0
        if self._max_bytes is not None:
            assert self._size is not None
            size = int(self._size(item))
            if current is not None and current.nbytes + size > self._max_bytes:
                done.append(self._close(group))
                current = None
        if current is None:
            current = self._open[group] = _Open()
        current.pairs.append((index, item))
        current.nbytes += size
        self.pending += 1
        if (self._max_items is not None and len(current.pairs) >= self._max_items) or (
            self._max_bytes is not None and current.nbytes >= self._max_bytes
        ):
            done.append(self._close(group))
        return done

    def flush_oldest(self) -> list[Pair] | None:
        """Close and return the open batch whose first item is the earliest, if any."""
        for group in self._open:
            return self._close(group)
        return None

    def flush_all(self) -> list[list[Pair]]:
        """Close every open batch, oldest first."""
        return [self._close(group) for group in list(self._open)]

    def _close(self, group: Hashable) -> list[Pair]:
        pairs = self._open.pop(group).pairs
        self.pending -= len(pairs)
        return pairs


def precompute_batches(pairs: list[Pair], batch: Batch) -> list[list[Pair]]:
    """Every batch of an in-memory source, in dispatch order.

    :param pairs: the source's ``(index, item)`` pairs, in order
    :param batch: the options
    :return: the batches
    :raises ValueError: ``batch_fn`` returned an item that is not in the source, returned
        one twice, or left one out
    """
    if batch.batch_fn is None:
        batcher = Batcher(batch)
        batches: list[list[Pair]] = []
        for index, item in pairs:
            batches.extend(batcher.add(index, item))
        batches.extend(batcher.flush_all())
        return batches
    positions: dict[int, deque[int]] = {}
    for index, item in pairs:
        positions.setdefault(id(item), deque()).append(index)
    result: list[list[Pair]] = []
    placed = 0
    for group in batch.batch_fn([item for _, item in pairs]):
        built: list[Pair] = []
        for item in group:
            queue = positions.get(id(item))
            if not queue:
                raise ValueError(
                    f"batch_fn returned an item that is not in the source (or returned it "
                    f"twice): {item!r:.80}"
                )
            built.append((queue.popleft(), item))
        if built:
            result.append(built)
            placed += len(built)
    if placed != len(pairs):
        raise ValueError(
            f"batch_fn left {len(pairs) - placed} of {len(pairs)} items out of every batch; "
            "each item must be in exactly one batch"
        )
    return result
