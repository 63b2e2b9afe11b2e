"""The routing coordinators: routers decide (and record), routed assets obey.

:class:`InProcessRoutingCoordinator` executes routers and keeps their decisions in memory,
per runtime. A durable coordinator subclasses it and overrides :meth:`record_decision` and
:meth:`get_decision`; the deciding logic stays the same. :class:`RoutedCoordinator`
executes routed assets: it reads the router's decision in the run and either calls the
asset or skips it.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from flowstone import AssetDef, InvalidAssetError, SkipAsset, Status

# A router reused from storage has this marker as its outcome's value until loaded.
from flowstone.protocols import IOContext, RouteDecision

from ._errors import InvalidRouteError
from ._events import RouteDecided
from ._spec import RoutedSpec, RouterSpec, routed_assets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowstone.protocols import Invocation

__all__ = ["InProcessRoutingCoordinator", "RoutedCoordinator"]


def _deps_mapping(invocation: Invocation) -> Mapping[str, Any]:
    """The router's inputs by asset name, and by parameter name where that differs."""
    values: dict[str, Any] = dict(invocation.inputs)
    for param, dep in invocation.asset.inputs.items():
        if param in invocation.inputs:
            values[dep] = invocation.inputs[param]
    return MappingProxyType(values)


class InProcessRoutingCoordinator:
    """Executes router assets and keeps their decisions in memory.

    Registered by default for the ``"router"`` kind. Implements
    :class:`~flowstone.protocols.RoutingCoordinator`. A recorded decision for the same
    (run, router, partition) is reused unless the run is forced, so a retried or resumed
    run never takes the other path.
    """

    def __init__(self) -> None:
        self._decisions: dict[tuple[str, str, str | None], RouteDecision] = {}

    async def record_decision(self, decision: RouteDecision) -> None:
        """Store a decision, replacing an earlier one of the same (run, router, partition)."""
        self._decisions[decision.run_id, decision.router, decision.partition] = decision

    async def get_decision(
        self, run_id: str, router: str, partition: str | None
    ) -> RouteDecision | None:
        """The decision stored for (run, router, partition), if any."""
        return self._decisions.get((run_id, router, partition))

    async def execute(self, invocation: Invocation) -> str | None:
        """Decide (or reuse the recorded decision) and record it.

        :return: the chosen routed asset's name, or ``None`` (the router's value)
        :raises InvalidRouteError: the decision names an asset not routed from the router
        """
        spec = invocation.asset.kind_spec
        if not isinstance(spec, RouterSpec):
            raise InvalidAssetError(
                invocation.asset.name,
                f"the routing coordinator got a {invocation.asset.kind!r} asset",
            )
        name = invocation.asset.name
        run_id = invocation.context.run_id
        partition = invocation.context.partition
        routed = routed_assets(invocation.run.pipeline, name)
        if not invocation.run.force:
            recorded = await self.get_decision(run_id, name, partition)
            # A recorded choice the pipeline no longer routes cannot be taken: decide again.
            if recorded is not None and (recorded.chosen is None or recorded.chosen in routed):
                self._report(invocation, recorded.chosen, "recorded", reused=True)
                return recorded.chosen

        error: Exception | None = None
        try:
            decided, via = await self._decide(spec, invocation)
        except SkipAsset:
            raise
        except Exception as exc:
            if spec.on_error != "default":
                raise
            decided, via, error = spec.default, "on_error", exc
        chosen = decided.name if isinstance(decided, AssetDef) else decided
        if chosen is not None and (not isinstance(chosen, str) or chosen not in routed):
            raise InvalidRouteError(name, chosen, routed, run_id, partition)
        await self.record_decision(
            RouteDecision(
                run_id=run_id,
                router=name,
                partition=partition,
                chosen=chosen,
                input_versions=dict(invocation.input_versions),
                decided_at=datetime.now(UTC),
            )
        )
        self._report(invocation, chosen, via, error=error)
        return chosen

    async def _decide(self, spec: RouterSpec, invocation: Invocation) -> tuple[Any, str]:
        """(decision, how it was made), by the choices or by the router function."""
        if not spec.declarative:
            return await invocation.call(), "function"
        deps = _deps_mapping(invocation)
        for item in spec.choices:
            try:
                matched = item.when(deps)
                if inspect.isawaitable(matched):
                    matched = await matched
            except Exception as exc:
                exc.add_note(
                    f"raised by when= of choice {item.asset!r} of router {invocation.asset.name!r}"
                )
                raise
            if matched:
                return item.asset, "choice"
        return spec.default, "default"

    @staticmethod
    def _report(
        invocation: Invocation,
        chosen: str | None,
        via: str,
        *,
        reused: bool = False,
        error: BaseException | None = None,
    ) -> None:
        route: dict[str, Any] = {"chosen": chosen, "via": via, "reused": reused}
        if error is not None:
            route["error"] = f"{type(error).__name__}: {error}"
        invocation.context.add_metadata(route=route)
        invocation.run.emit(
            RouteDecided(
                run_id=invocation.context.run_id,
                asset=invocation.asset.name,
                partition=invocation.context.partition,
                chosen=chosen,
                via=via,
                reused=reused,
                error=error,
            )
        )


class RoutedCoordinator:
    """Executes routed assets: runs the asset when its router chose it, else skips it.

    Registered by default for the ``"routed"`` kind. The router is a scheduled dependency,
    so its decision is known when a routed asset executes.
    """

    async def execute(self, invocation: Invocation) -> Any:
        """Call the asset if its router chose it.

        :raises SkipAsset: the router chose another asset, or none
        """
        spec = invocation.asset.kind_spec
        if not isinstance(spec, RoutedSpec):
            raise InvalidAssetError(
                invocation.asset.name,
                f"the routed coordinator got a {invocation.asset.kind!r} asset",
            )
        chosen = await self._chosen(invocation, spec.router)
        if chosen != invocation.asset.name:
            if chosen is None:
                raise SkipAsset(f"router {spec.router!r} chose none of its routes")
            raise SkipAsset(f"router {spec.router!r} chose {chosen!r}")
        return await invocation.call()

    @staticmethod
    async def _chosen(invocation: Invocation, router: str) -> str | None:
        run = invocation.run
        router_def = run.pipeline[router]
        partition = run.partition if router_def.partitions is not None else None
        outcome = run.outcome(router)
        if outcome is not None:
            if outcome.status is not Status.SUCCEEDED:
                raise SkipAsset(f"router {router!r} {outcome.status.value}")
            value = await run.value(router)
        else:
            routing = run.runtime.coordinators.get(router_def.kind)
            get_decision = getattr(routing, "get_decision", None)
            if get_decision is not None:
                decision: RouteDecision | None = await get_decision(run.run_id, router, partition)
                if decision is not None:
                    return decision.chosen
            # Not part of this run (with_deps=False): its current stored decision.
            value = await run.runtime.io_manager_for(router_def).load(
                IOContext(router, partition, run.run_id, router_def.metadata, router_def)
            )
        if value is not None and not isinstance(value, str):
            raise InvalidRouteError(
                router, value, routed_assets(run.pipeline, router), run.run_id, partition
            )
        return value
