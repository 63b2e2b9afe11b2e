"""Inputs read through a partition mapping: the upstream partitions one asset reads.

A dependency with a mapping (``deps_partitions=``) is not scheduled at the run's
partition. When the asset starts, the mapping names the upstream partitions it reads:

* with ``with_deps`` (the default) each one is materialized in the same run, for its own
  partition (a current stored value is reused, as for any upstream asset);
* without, each is read from the store; missing ones raise
  :class:`~flowstone.MissingPartitionsError` naming them.

An ``optional`` mapping leaves missing (or failed) partitions out. The input's data
version is a digest of each upstream partition's version, so the asset's value is stale
exactly when one of the partitions it read changed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import anyio

from .errors import ValueNotFoundError
from .partition_mappings import (
    AllPartitions,
    IdentityMapping,
    LastN,
    MissingPartitionsError,
    Offset,
    StaticMapping,
    TimeWindowMapping,
)
from .protocols import IOContext
from .records import Status
from .scheduling import run_ready_queue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from .assets import AssetDef
    from .invocation import AssetOutcome
    from .materializer import Run
    from .partition_mappings import PartitionMapping

__all__ = ["UpstreamWaiting", "combined_version", "mapped_input", "upstream_keys"]

#: Built-in mappings, whose keys are canonical keys of the dependency already.
_CANONICAL = (IdentityMapping, TimeWindowMapping, LastN, Offset, AllPartitions, StaticMapping)

#: An input read through a mapping: (present, value, data version, reason if absent).
Input = tuple[bool, Any, str, str]


def upstream_keys(
    asset_def: AssetDef[..., Any], dep_def: AssetDef[..., Any], partition: str | None
) -> tuple[PartitionMapping, Sequence[str | None]]:
    """The mapping of ``dep_def`` and the upstream keys partition ``partition`` reads."""
    mapping = asset_def.partition_mappings[dep_def.name]
    keys = mapping.upstream_keys(partition, asset_def.partitions, dep_def.partitions)
    definition = dep_def.partitions
    if definition is None:
        keys = [None]
    elif not isinstance(mapping, _CANONICAL):
        # A custom mapping's keys are checked (and made canonical) like any given key.
        keys = list(
            dict.fromkeys(definition.validate(k, asset=dep_def.name) for k in keys if k is not None)
        )
    return mapping, keys


def combined_version(mapping: PartitionMapping, versions: Mapping[str | None, str]) -> str:
    """One data version for the upstream partitions read (the version itself for one)."""
    if not mapping.many and len(versions) == 1:
        return next(iter(versions.values()))
    digest = hashlib.blake2b(digest_size=10)
    for key, version in versions.items():
        digest.update(f"{key}={version}\x00".encode())
    return digest.hexdigest()


def _value(mapping: PartitionMapping, values: dict[str | None, Any]) -> Any:
    if mapping.many:
        return values
    return next(iter(values.values()))


def _none_present(mapping: PartitionMapping, reason: str) -> Input:
    """An optional mapping with nothing to read: an empty ``dict`` when the input is one,
    else absent (the parameter gets its default)."""
    if mapping.many:
        return True, {}, combined_version(mapping, {}), ""
    return False, None, "", reason


class UpstreamWaiting(Exception):
    """An upstream partition the asset reads waits in this run (the asset waits too)."""

    def __init__(self, dependency: str) -> None:
        self.dependency = dependency
        super().__init__(dependency)


async def mapped_input(run: Run, asset_def: AssetDef[..., Any], dep: str) -> Input:
    """Read (materializing them first under ``with_deps``) the partitions of ``dep`` that
    the run's partition of ``asset_def`` maps to.

    :raises MissingPartitionsError: without ``with_deps``, a partition is not stored and the
        mapping is not optional; or no partition maps to this one
    """
    pipeline = run.pipeline
    if dep not in pipeline:
        return False, None, "", f"input {dep!r} is not in the pipeline"
    dep_def = pipeline[dep]
    partition = run.partition_of(asset_def)
    mapping, keys = upstream_keys(asset_def, dep_def, partition)
    if not keys:
        if mapping.optional:
            return _none_present(mapping, f"no partition of input {dep!r} maps to this one")
        raise MissingPartitionsError(asset_def.name, dep, partition, ())
    if run.with_deps:
        return await _materialized(run, asset_def, mapping, dep, keys)
    return await _stored(run, asset_def, mapping, dep_def, partition, keys)


class _PartitionsRunner:
    """The ready queue's view of one asset at many partitions of a run: its "names" are
    the partition keys (see :func:`~flowstone._core.scheduling.run_ready_queue`)."""

    __slots__ = ("_dep", "_run")

    def __init__(self, run: Run, dep: str) -> None:
        self._run = run
        self._dep = dep

    def is_done(self, name: str) -> bool:
        return self._run.partition_run(_key(name), self._dep).is_done(self._dep)

    def claim(self, name: str) -> bool:
        return self._run.partition_run(_key(name), self._dep).claim(self._dep)

    async def run_asset(self, name: str, release: Callable[[str], None]) -> bool:
        def released(_: str) -> None:
            release(name)

        return await self._run.partition_run(_key(name), self._dep).run_asset(self._dep, released)

    async def await_other(self, name: str) -> None:
        await self._run.partition_run(_key(name), self._dep).await_other(self._dep)

    def abandon(self, name: str) -> None:
        self._run.partition_run(_key(name), self._dep).abandon(self._dep)


_NONE = "\x00"  # the queue's name for the partition of an unpartitioned dependency


def _key(name: str) -> str | None:
    return None if name == _NONE else name


async def _materialized(
    run: Run,
    asset_def: AssetDef[..., Any],
    mapping: PartitionMapping,
    dep: str,
    keys: Sequence[str | None],
) -> Input:
    pipeline = run.pipeline
    dep_def = pipeline[dep]
    outcomes: dict[str | None, AssetOutcome] = {}
    if any(d in pipeline for d in dep_def.scheduled_deps):
        # It has upstream assets of its own: each partition runs with its closure.
        async def one(key: str | None) -> None:
            outcomes[key] = (await run.partition_run(key, dep).materialize([dep]))[dep]

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(one, key)
    else:
        # A source: its partitions go on one ready queue, as the identity inputs of an
        # asset do (a worker runs one partition after another; helpers join as needed).
        run.runtime.io_manager_for(dep_def)
        if dep_def.kind != "asset":
            run.runtime.coordinators.get(dep_def.kind)
        names = [_NONE if key is None else key for key in keys]
        await run_ready_queue(names, _no_deps, _PartitionsRunner(run, dep))
        for key in keys:
            outcomes[key] = run.partition_run(key, dep).outcome_or_cancelled(dep)
    values: dict[str | None, Any] = {}
    versions: dict[str | None, str] = {}
    for key in keys:
        outcome = outcomes[key]
        if outcome.status is Status.SUCCEEDED:
            values[key] = await run.partition_run(key, dep).value(dep)
            versions[key] = outcome.data_version or ""
        elif outcome.status is Status.WAITING:
            raise UpstreamWaiting(dep)
        elif not mapping.optional:
            if outcome.status is Status.FAILED:
                failed = [k for k in keys if outcomes[k].status is Status.FAILED]
                raise MissingPartitionsError(
                    asset_def.name,
                    dep,
                    run.partition_of(asset_def),
                    [k or "" for k in failed],
                    failed=True,
                ) from outcome.error
            where = "" if key is None else f" partition {key!r}"
            return False, None, "", f"input {dep!r}{where} {outcome.status.value}"
    if not values:
        return _none_present(mapping, f"no partition of input {dep!r} succeeded")
    return True, _value(mapping, values), combined_version(mapping, versions), ""


def _no_deps(name: str) -> tuple[str, ...]:
    return ()


async def _stored(
    run: Run,
    asset_def: AssetDef[..., Any],
    mapping: PartitionMapping,
    dep_def: AssetDef[..., Any],
    partition: str | None,
    keys: Sequence[str | None],
) -> Input:
    runtime = run.runtime
    io = runtime.io_manager_for(dep_def)
    values: dict[str | None, Any] = {}
    versions: dict[str | None, str] = {}
    missing: list[str] = []
    for key in keys:
        record = await runtime.store.latest(dep_def.name, key)
        try:
            if record is None:
                raise ValueNotFoundError(dep_def.name, key)
            values[key] = await io.load(
                IOContext(dep_def.name, key, run.run_id, dep_def.metadata, dep_def)
            )
        except ValueNotFoundError:
            missing.append("" if key is None else key)
            continue
        versions[key] = record.data_version or ""
    if missing and not mapping.optional:
        raise MissingPartitionsError(asset_def.name, dep_def.name, partition, missing)
    if not values:
        return _none_present(mapping, f"no partition of input {dep_def.name!r} is stored")
    return True, _value(mapping, values), combined_version(mapping, versions), ""
