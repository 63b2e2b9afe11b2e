"""The context a scatter item's function receives: the asset's, plus the item's key and
its batch (:class:`ItemContext`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstone import Context

if TYPE_CHECKING:
    from ._batch import BatchInfo

__all__ = ["ItemContext"]


class ItemContext(Context):
    """What a scatter item's function knows: the asset's context, the item's key and, in a
    batched scatter, its batch.

    It is a :class:`flowstone.Context` (the same asset, partition, run, attempt and
    resources, and metadata added through it lands on the asset's record); its log lines
    also carry the item's ``scatter_key``.

    :ivar scatter_key: the key of the item (or, for a batch, of its first item)
    :ivar batch_index: the batch's position (0-based), in a batched scatter
    :ivar batch_count: how many batches there are (when known), in a batched scatter
    :ivar batch_input: the batch's shared input, in a batched scatter
    """

    __slots__ = ("batch_count", "batch_index", "batch_input", "scatter_key")

    scatter_key: str
    batch_index: int | None
    batch_count: int | None
    batch_input: Any

    @classmethod
    def of(cls, parent: Context, key: str, batch: BatchInfo | None = None) -> ItemContext:
        """The context of one item (or batch) of the scatter asset ``parent`` is the context of."""
        ctx = parent.derive(cls)
        ctx.scatter_key = key
        if batch is None:
            ctx.batch_index = ctx.batch_count = ctx.batch_input = None
        else:
            ctx.batch_index = batch.index
            ctx.batch_count = batch.count
            ctx.batch_input = batch.input
        return ctx

    def _fields(self) -> dict[str, object]:
        fields = super()._fields()
        fields["scatter_key"] = self.scatter_key
        return fields
