"""Reading and judging stored values: the runtime's ``load``, ``exists``, ``invalidate``,
``status`` and ``history``.

:class:`StoredValues` is the base class of :class:`~flowstone.Runtime` holding these; the
runtime provides the store, the IO managers and the asset definitions it has seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .assets import AssetDef
from .canonical_keys import canonical_partition, check_stored_unpartitioned, partition_for
from .dynamic_partitions import refresh_dynamic_partitions
from .errors import ValueNotFoundError
from .mapped_status import downstream_partitions, in_scope
from .pipeline import Pipeline, as_pipeline
from .protocols import IOContext, IOManager, MaterializationStore
from .status import AssetState, asset_states

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .records import MaterializationRecord
    from .runtime import Runtime

__all__ = ["StoredValues"]


class StoredValues:
    """The runtime's questions about stored values (see :class:`~flowstone.Runtime`)."""

    store: MaterializationStore
    _known_assets: dict[str, AssetDef[..., Any]]

    async def _ready(self) -> None:
        raise NotImplementedError

    def io_manager_for(self, asset: AssetDef[..., Any] | str) -> IOManager:
        """The IO manager that stores ``asset``'s value."""
        raise NotImplementedError

    def _definition(self, asset: AssetDef[..., Any] | str) -> AssetDef[..., Any] | None:
        if isinstance(asset, AssetDef):
            return asset
        return self._known_assets.get(asset)

    def _io_context(
        self,
        asset: AssetDef[..., Any] | str,
        partition: str | None,
        options: Mapping[str, Any] | None = None,
    ) -> IOContext:
        """Where ``asset``'s value for ``partition`` is, with the key made canonical."""
        name = asset.name if isinstance(asset, AssetDef) else asset
        definition = self._definition(asset)
        return IOContext(
            name,
            partition_for(definition, partition),
            None,
            definition.metadata if definition is not None else {},
            definition,
            options if options is not None else {},
        )

    async def load(
        self,
        asset: AssetDef[..., Any] | str,
        partition: str | None = None,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Load the stored value of ``asset`` (and ``partition``, made canonical).

        :param options: passed to the IO manager's ``load`` as ``IOContext.options``, e.g.
            ``{"columns": ["id"]}`` for the ``parquet`` IO manager
        :raises ValueNotFoundError: nothing is stored
        :raises PartitionError: the asset is partitioned and ``partition`` is missing or
            invalid
        """
        await self._ready()
        context = self._io_context(asset, partition, options)
        io = self.io_manager_for(asset)
        try:
            return await io.load(context)
        except ValueNotFoundError:
            if partition is None and context.definition is None:
                await check_stored_unpartitioned(io, context.asset)
            raise

    async def exists(self, asset: AssetDef[..., Any] | str, partition: str | None = None) -> bool:
        """Whether a value of ``asset`` (and ``partition``, made canonical) is stored.

        An invalidated value is still stored (``status`` calls it ``"stale"``).

        :raises PartitionError: the asset is partitioned and ``partition`` is missing or
            invalid
        """
        await self._ready()
        context = self._io_context(asset, partition)
        return await self.io_manager_for(asset).exists(context)

    async def invalidate(
        self,
        asset: AssetDef[..., Any] | str,
        partition: str | None = None,
        *,
        downstream: Pipeline | None = None,
    ) -> list[str]:
        """Mark the stored value of ``asset`` not current, so the next run recomputes it.

        The value stays stored and loadable until it is replaced: ``exists`` stays true and
        ``status`` says ``"stale"``.

        :param partition: the partition (made canonical); downstream assets that are not
            partitioned are invalidated as a whole
        :param downstream: a pipeline; its assets downstream of ``asset`` are invalidated too
            (through a partition mapping, the partitions of theirs that read this one)
        :return: the invalidated asset names
        :raises PartitionError: the asset is partitioned and ``partition`` is missing or
            invalid
        """
        await self._ready()
        name = asset.name if isinstance(asset, AssetDef) else asset
        if downstream is None:
            await self.store.invalidate(name, partition_for(self._definition(asset), partition))
            return [name]
        if any(a.partition_mappings for a in downstream):
            # Through a partition mapping, the partitions of the dependent that read it.
            pairs = downstream_partitions(
                downstream, name, partition_for(downstream[name], partition)
            )
            for each, part in pairs:
                await self.store.invalidate(each, part)
            return list(dict.fromkeys(each for each, _ in pairs))
        names = downstream.downstream(name, include_self=True)
        partition_for(downstream[name], partition)  # a partitioned asset needs its key
        key = canonical_partition((downstream[n] for n in names), partition)
        for each in names:
            part = key if downstream[each].partitions is not None else None
            await self.store.invalidate(each, part)
        return names

    async def status(self, assets: Any, partition: str | None = None) -> dict[str, AssetState]:
        """Whether each asset's stored value is current, stale or missing.

        The rules are the materializer's: a value is current when a run would reuse it. An
        optional input the value was not computed from (a router's unchosen branch) does not
        make it stale.

        :param assets: a pipeline, assets or modules
        :param partition: the partition key for partitioned assets (made canonical)
        :raises PartitionError: the key is not valid for a partitioned asset
        """
        await self._ready()
        pipeline = as_pipeline(assets)
        await refresh_dynamic_partitions(cast("Runtime", self), pipeline)
        return await asset_states(
            cast("Runtime", self), pipeline, canonical_partition(in_scope(pipeline), partition)
        )

    async def history(
        self, asset: AssetDef[..., Any] | str, partition: str | None = None, *, limit: int = 100
    ) -> list[MaterializationRecord]:
        """The materialization records of ``asset``, newest first.

        :param partition: one partition (made canonical), or ``None`` for all of them
        :raises PartitionError: ``partition`` is not valid for the asset
        """
        await self._ready()
        name = asset.name if isinstance(asset, AssetDef) else asset
        if partition is not None:
            partition = partition_for(self._definition(asset), partition) or partition
        return await self.store.history(name, partition, limit=limit)
