"""``Runtime.status``: whether each asset's stored value is current, stale or missing, or
whether a run would skip the asset again.

It applies the materializer's rules (:mod:`.versions`) to what is stored, without running
anything: a value is *current* when it is stored, its record has the version its inputs
give now, and those inputs are current themselves. An asset whose kind skips by its inputs
alone (a routed asset) is *skipped* while its newest record is a skip at the version its
current inputs give, and so is an asset that needs the value of a skipped one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .mapped_status import in_scope, mapped_dependency
from .protocols import IOContext
from .records import Status
from .versions import counts_optional_input, expected_version

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from .assets import AssetDef
    from .pipeline import Pipeline
    from .records import MaterializationRecord
    from .runtime import Runtime

__all__ = ["AssetState", "asset_states"]


@dataclass(frozen=True, slots=True)
class AssetState:
    """Whether an asset's stored value is current.

    :ivar state: ``"current"`` (stored and up to date), ``"stale"`` (stored, but its code or
        an input changed since, an input is not current, or it was invalidated),
        ``"missing"`` (no value stored: never materialized, or deleted; exactly when
        :meth:`Runtime.exists <flowstone.Runtime.exists>` is false) or ``"skipped"`` (a run
        now would skip it again: a routed asset its router did not choose, while the
        router's decision stands, or an asset downstream of one that needs its value)
    :ivar record: the latest succeeded, not invalidated record, if any
    """

    asset: str
    partition: str | None
    state: str
    record: MaterializationRecord | None = None

    @property
    def current(self) -> bool:
        """Whether the stored value is up to date."""
        return self.state == "current"

    @property
    def settled(self) -> bool:
        """Whether a run would leave it as it is: ``"current"`` or ``"skipped"``."""
        return self.state in ("current", "skipped")


async def asset_states(
    runtime: Runtime, pipeline: Pipeline, partition: str | None
) -> dict[str, AssetState]:
    """The state of every asset of ``pipeline`` for ``partition`` (already canonical).

    An optional input that the stored value was not computed from (the branch a router did
    not choose) does not make it stale. Routed joins are judged by the route their stored
    value took: a router that would choose differently now is not run to find out.
    """
    expected: dict[str, str] = {}
    states: dict[str, AssetState] = {}
    scope = {a.name for a in in_scope(pipeline)}
    mapped_cache: dict[tuple[str, str | None], AssetState] = {}

    def states_of(sub: Pipeline, key: str | None) -> Awaitable[dict[str, AssetState]]:
        return asset_states(runtime, sub, key)

    for name in pipeline.order:
        asset_def = pipeline[name]
        part = partition if asset_def.partitions is not None else None
        if (
            name not in scope
            and part is not None
            and part not in (asset_def.partitions if asset_def.partitions is not None else ())
        ):
            continue  # read only through mappings, for other partitions than this one
        record = await runtime.store.latest(name, part)
        inputs: dict[str, str] = {}
        inputs_current = True
        skipped_input = False
        for dep in asset_def.deps:
            if dep in asset_def.partition_mappings and dep in pipeline:
                version, current = await mapped_dependency(
                    states_of, pipeline, asset_def, dep, part, mapped_cache
                )
                if version is not None:
                    inputs[dep] = version
                inputs_current = inputs_current and current
                continue
            if dep not in expected:
                continue
            dep_state = states[dep].state
            if dep in asset_def.optional:
                if not counts_optional_input(
                    dep, record, present=dep_state not in ("missing", "skipped")
                ):
                    continue
            elif dep_state == "skipped":
                skipped_input = True
            inputs[dep] = expected[dep]
            inputs_current = inputs_current and states[dep].current
        version = expected_version(asset_def, part, inputs, record)
        expected[name] = version
        if skipped_input or (
            inputs_current and await _skipped_again(runtime, asset_def, part, version)
        ):
            states[name] = AssetState(name, part, "skipped", record)
            continue
        stored = await runtime.io_manager_for(asset_def).exists(
            IOContext(name, part, None, asset_def.metadata, asset_def)
        )
        if not stored:
            state = "missing"
        elif record is not None and record.data_version == version and inputs_current:
            state = "current"
        else:
            state = "stale"
        states[name] = AssetState(name, part, state, record)
    return states


async def _skipped_again(
    runtime: Runtime, asset_def: AssetDef[..., Any], partition: str | None, version: str
) -> bool:
    """Whether the asset's newest record is a skip that its current inputs would repeat."""
    spec = asset_def.kind_spec
    if spec is None or not spec.skips_follow_inputs:
        return False
    newest = await runtime.store.history(asset_def.name, partition, limit=1)
    return bool(newest) and newest[0].status is Status.SKIPPED and newest[0].data_version == version
