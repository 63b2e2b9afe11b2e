"""The context a scatter item's function receives: the asset's, plus the item's key and
its batch (:class:`ItemContext`).

An item's context is made once per item, so it is made cheaply: it holds a reference to
the asset's context and the item's key (or, while nothing has asked for the key, the
item's position, turned into the key on first use); the asset's fields are read through
that reference. A batch's context also holds its
batch's fields.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any, NoReturn

from flowstone import Context

if TYPE_CHECKING:
    from flowstone import Resources, Runtime

    from ._batch import BatchInfo

__all__ = ["BatchItemContext", "ItemContext", "new_item_context"]


def _read_only(ctx: object, value: object) -> NoReturn:
    raise AttributeError(
        "an item's context shares its asset's context; this field cannot be set on it"
    )


def _shared(name: str) -> Any:
    """A field read from the asset's context (a property that reads it at C speed)."""
    return property(attrgetter(f"_parent.{name}"), _read_only, doc=f"The asset's ``{name}``.")


class ItemContext(Context):
    """What a scatter item's function knows: the asset's context, the item's key and, in a
    batched scatter, its batch.

    It is a :class:`flowstone.Context` (the same asset, partition, run, attempt and
    resources, and metadata added through it lands on the asset's record); its log lines
    also carry the item's ``scatter_key``. The asset's fields are shared with the asset's
    context and cannot be set on an item's.

    :ivar scatter_key: the key of the item (or, for a batch, of its first item)
    :ivar batch_index: the batch's position (0-based), in a batched scatter
    :ivar batch_count: how many batches there are (when known), in a batched scatter
    :ivar batch_input: the batch's shared input, in a batched scatter
    """

    __slots__ = ("_key", "_parent")

    _parent: Context
    #: The key, or the item's position until the key is asked for.
    _key: str | int

    asset: str = _shared("asset")
    pipeline: str | None = _shared("pipeline")
    partition: str | None = _shared("partition")
    run_id: str = _shared("run_id")
    attempt: int = _shared("attempt")
    resources: Resources = _shared("resources")
    _runtime: Runtime | None = _shared("_runtime")
    _metadata: dict[str, Any] = _shared("_metadata")

    @classmethod
    def of(cls, parent: Context, key: str | int, batch: BatchInfo | None = None) -> ItemContext:
        """The context of one item (or batch) of the scatter asset ``parent`` is the context of.

        :param key: the item's key, or its position when its key is its position
        """
        if batch is None:
            return new_item_context(parent, key)
        ctx = object.__new__(BatchItemContext)
        ctx._parent = parent
        ctx._key = key
        ctx._log = None
        ctx.batch_index = batch.index
        ctx.batch_count = batch.count
        ctx.batch_input = batch.input
        return ctx

    @property
    def scatter_key(self) -> str:
        """The key of the item (or, for a batch, of its first item)."""
        key = self._key
        if key.__class__ is not str:
            self._key = key = str(key)
        return key

    @scatter_key.setter
    def scatter_key(self, key: str) -> None:
        self._key = key

    def _fields(self) -> dict[str, object]:
        fields = super()._fields()
        fields["scatter_key"] = self.scatter_key
        return fields


class BatchItemContext(ItemContext):
    """The context of one batch of a batched scatter: an :class:`ItemContext` with the
    batch's fields."""

    __slots__ = ("batch_count", "batch_index", "batch_input")

    batch_index: int | None
    batch_count: int | None
    batch_input: Any


def new_item_context(parent: Context, key: str | int) -> ItemContext:
    """The context of one (unbatched) item of the scatter asset ``parent`` is the context of.

    :param key: the item's key, or its position when its key is its position
    """
    ctx = object.__new__(ItemContext)
    ctx._parent = parent
    ctx._key = key
    ctx._log = None
    return ctx
