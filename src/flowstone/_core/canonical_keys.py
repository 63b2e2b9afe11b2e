"""Canonical partition keys at the API boundary.

A partitioning may accept a key written in more than one way (``"2025-1-2"`` for
``"2025-01-02"``); every operation (materialize, backfill, load, exists, status,
invalidate) turns it into the canonical key before anything is read or stored, so one
partition is one stored value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import PartitionError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .assets import AssetDef
    from .protocols import IOManager

__all__ = ["canonical_partition", "check_stored_unpartitioned", "partition_for"]


def canonical_partition(assets: Iterable[AssetDef[..., Any]], partition: str | None) -> str | None:
    """The canonical form of ``partition``, checked against every partitioned asset given.

    :param assets: the assets the key is for; unpartitioned ones are ignored
    :param partition: the key as given, or ``None``
    :return: the canonical key (``partition`` itself when no asset is partitioned)
    :raises PartitionError: an asset rejects the key, or two assets disagree on its
        canonical form
    """
    if partition is None:
        return None
    canonical: str | None = None
    first = ""
    for asset_def in assets:
        definition = asset_def.partitions
        if definition is None:
            continue
        key = definition.validate(partition, asset=asset_def.name)
        if canonical is None:
            canonical, first = key, asset_def.name
        elif key != canonical:
            raise PartitionError(
                asset_def.name,
                partition,
                f"its canonical key is {key!r} here but {canonical!r} for asset {first!r}; "
                "pass one key both read the same way",
            )
    return partition if canonical is None else canonical


def partition_for(asset_def: AssetDef[..., Any] | None, partition: str | None) -> str | None:
    """The canonical key of one asset's partition (``None`` for an unpartitioned asset).

    An asset the runtime does not know (``None``) keeps the key as given.

    :raises PartitionError: the asset is partitioned and the key is missing or invalid
    """
    if asset_def is None:
        return partition
    definition = asset_def.partitions
    if definition is None:
        return None
    if partition is None:
        raise PartitionError(asset_def.name, None, "the asset is partitioned; pass partition=...")
    return definition.validate(partition, asset=asset_def.name)


async def check_stored_unpartitioned(io: IOManager, asset: str) -> None:
    """For an asset the runtime has no definition of, read without a partition and not
    found: say so when its values are stored by partition instead.

    :raises PartitionError: the IO manager lists partitions of ``asset``
    """
    list_partitions = getattr(io, "list_partitions", None)
    if list_partitions is None:
        return
    try:
        keys = [k for k in await list_partitions(asset) if k is not None]
    except Exception:  # only a better message is at stake: the caller raises its own
        return
    if keys:
        shown = ", ".join(repr(k) for k in keys[:3]) + (", …" if len(keys) > 3 else "")
        raise PartitionError(
            asset, None, f"the asset is stored by partition ({shown}); pass partition=..."
        )
