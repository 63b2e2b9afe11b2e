"""Checks of ``@asset(deps_partitions=...)``: which dependency each mapping is for.

The mapping's fit with the two partitionings is checked when a pipeline is built
(:func:`check_pipeline_mappings`), because only then is the dependency's definition known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import InvalidAssetError
from .partition_mappings import PartitionMapping

if TYPE_CHECKING:
    from .assets import AssetDef
    from .pipeline import Pipeline

__all__ = ["check_pipeline_mappings", "dependency_mappings"]


def dependency_mappings(
    asset_def: AssetDef[..., Any], given: object
) -> Mapping[str, PartitionMapping]:
    """``deps_partitions=`` keyed by dependency asset name, checked.

    :raises InvalidAssetError: it is not a mapping, names no dependency of the asset, or
        holds something that is not a partition mapping
    """
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise InvalidAssetError(
            asset_def.name,
            f"deps_partitions= must map dependencies to partition mappings, not {given!r}",
        )
    mappings: dict[str, PartitionMapping] = {}
    for key, mapping in given.items():
        if not isinstance(key, str):
            raise InvalidAssetError(
                asset_def.name, f"deps_partitions= keys must be dependency names, not {key!r}"
            )
        dep = asset_def.inputs.get(key, key)
        if dep not in asset_def.deps or dep in asset_def.owned_deps:
            raise InvalidAssetError(
                asset_def.name,
                f"deps_partitions= names {key!r}, which is not one of its dependencies "
                f"({', '.join(map(repr, asset_def.deps)) or 'it has none'})",
            )
        if not isinstance(mapping, PartitionMapping):
            raise InvalidAssetError(
                asset_def.name,
                f"deps_partitions[{key!r}] must be a partition mapping such as "
                f"fs.TimeWindowMapping(), not {mapping!r}",
            )
        if dep in mappings:
            raise InvalidAssetError(
                asset_def.name, f"deps_partitions= maps dependency {dep!r} twice"
            )
        mappings[dep] = mapping
    return mappings


def check_pipeline_mappings(pipeline: Pipeline) -> None:
    """Check every asset's mappings against the partitionings they join.

    :raises PartitionMappingError: a mapping does not fit (a ``TimeWindowMapping`` from
        static partitions, say), naming the asset and the dependency
    """
    for asset_def in pipeline:
        for dep, mapping in asset_def.partition_mappings.items():
            if dep not in pipeline:
                continue
            mapping.check(
                asset_def.partitions, pipeline[dep].partitions, asset=asset_def.name, dependency=dep
            )
