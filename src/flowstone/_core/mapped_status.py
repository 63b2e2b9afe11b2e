"""``Runtime.status`` across partition mappings.

A dependency read through a mapping is judged at each upstream partition the mapping
names: the asset is current only while every one of them is current (missing ones count
only when the mapping is not optional), so a weekly value is stale when one of its seven
days changed, and only then.

An asset reached only through mapped edges (the daily asset under a weekly one) has other
partitions than the key asked about: the key is checked against the other assets, and
such an asset is reported only when the key is one of its partitions too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .mapped_inputs import combined_version, upstream_keys

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .assets import AssetDef
    from .pipeline import Pipeline
    from .status import AssetState

    States = Callable[[Pipeline, str | None], Awaitable[dict[str, AssetState]]]

__all__ = ["in_scope", "mapped_dependency"]

_STALE = "stale"  # the version of an upstream partition that is not current


def in_scope(pipeline: Pipeline) -> list[AssetDef[..., Any]]:
    """The assets whose partition is the key asked about: every asset but those reached
    only through partition-mapped edges."""
    if not pipeline.has_partition_mappings:
        return list(pipeline)
    names = [n for n in pipeline.order if not pipeline.children(n)]
    scope = set(pipeline.upstream(names, include_self=True, scheduled_only=True))
    return [a for a in pipeline if a.name in scope]


async def mapped_dependency(
    states: States,
    pipeline: Pipeline,
    asset_def: AssetDef[..., Any],
    dep: str,
    partition: str | None,
    cache: dict[tuple[str, str | None], AssetState],
) -> tuple[str | None, bool]:
    """The version a mapped dependency gives now, and whether all it reads is current.

    :param states: computes the states of a pipeline for one partition
    :param cache: states already computed, by (asset, partition)
    :return: ``(version, current)``; the version is ``None`` when the input does not count
        (an optional mapping with nothing to read)
    """
    dep_def = pipeline[dep]
    mapping, keys = upstream_keys(asset_def, dep_def, partition)
    versions: dict[str | None, str] = {}
    current = True
    for key in keys:
        state = cache.get((dep, key))
        if state is None:
            found = await states(pipeline.subset([dep]), key)
            for name, each in found.items():
                cache[name, key] = each
            state = found[dep]
        if state.state in ("missing", "skipped"):
            if not mapping.optional:
                current = False
            continue
        if state.current and state.record is not None:
            versions[key] = state.record.data_version or ""
        else:
            versions[key], current = _STALE, False
    if not keys and not mapping.optional:
        current = False
    if not versions and not mapping.many:
        return None, current
    return combined_version(mapping, versions), current


def downstream_partitions(
    pipeline: Pipeline, name: str, key: str | None
) -> list[tuple[str, str | None]]:
    """The (asset, partition) pairs downstream of partition ``key`` of ``name``, itself
    first: through identity edges the same key, through a mapping every partition of the
    dependent whose mapping reads ``key``.

    :raises PartitionError: an identity dependent does not have the key
    """
    found: dict[tuple[str, str | None], None] = {(name, key): None}
    pending = [(name, key)]
    while pending:
        asset, part = pending.pop()
        for child in pipeline.children(asset):
            child_def = pipeline[child]
            definition = child_def.partitions
            mapping = child_def.partition_mappings.get(asset)
            if mapping is None:
                targets: list[str | None] = [
                    None
                    if definition is None or part is None
                    else definition.validate(part, asset=child)
                ]
            else:
                candidates: list[str | None] = (
                    [None] if definition is None else list(definition.keys())
                )
                targets = [
                    k for k in candidates if part in upstream_keys(child_def, pipeline[asset], k)[1]
                ]
            for target in targets:
                if (child, target) not in found:
                    found[child, target] = None
                    pending.append((child, target))
    order = {n: i for i, n in enumerate(pipeline.order)}
    return sorted(found, key=lambda pair: order[pair[0]])


def mapped_only(pipeline: Pipeline, selection: list[str]) -> set[str]:
    """The assets upstream of ``selection`` that it reaches only through partition
    mappings (a run materializes them for the mappings' partitions, not its own)."""
    if not pipeline.has_partition_mappings:
        return set()
    reached = set(selection)
    pending = list(selection)
    while pending:
        asset_def = pipeline[pending.pop()]
        for dep in asset_def.deps:
            if dep in pipeline and dep not in reached and dep not in asset_def.partition_mappings:
                reached.add(dep)
                pending.append(dep)
    return set(pipeline.upstream(selection, include_self=True)) - reached
