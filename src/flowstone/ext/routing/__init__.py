"""Conditional routing: a router asset picks one path; the others are skipped.

::

    from flowstone.ext.routing import choice, routed_from, router

    @fs.asset
    @router(choice("by_grid", when=lambda deps: deps["query"]["kind"] == "grid"),
            default="by_name")
    async def pick_region(query: dict) -> None: ...

    @fs.asset
    @routed_from("pick_region")
    async def by_grid(query: dict) -> str: ...

    @fs.asset
    @routed_from("pick_region")
    async def by_name(query: dict) -> str: ...

    @fs.asset(optional_deps=["by_grid", "by_name"])
    async def region(by_grid: str | None = None, by_name: str | None = None) -> str:
        return by_grid or by_name

The router's value is its decision (the chosen asset's name, or ``None``). The unchosen
routed assets and their descendants are recorded ``skipped``; ``optional_deps`` lets a
downstream asset run with a skipped input. Decisions are recorded and reused within a run.

The coordinators registered as ``"router"`` and ``"routed"`` execute these assets;
:class:`InProcessRoutingCoordinator` and :class:`RoutedCoordinator` are the defaults.
"""

from __future__ import annotations

from ._coordinator import InProcessRoutingCoordinator, RoutedCoordinator
from ._errors import (
    InvalidChoiceError,
    InvalidRoutedAssetError,
    InvalidRouteError,
    RoutingDefinitionError,
)
from ._events import RouteDecided
from ._spec import (
    Choice,
    OnError,
    RoutedSpec,
    RouterSpec,
    choice,
    routed_assets,
    routed_from,
    router,
)

__all__ = (
    "Choice",
    "InProcessRoutingCoordinator",
    "InvalidChoiceError",
    "InvalidRouteError",
    "InvalidRoutedAssetError",
    "OnError",
    "RouteDecided",
    "RoutedCoordinator",
    "RoutedSpec",
    "RouterSpec",
    "RoutingDefinitionError",
    "choice",
    "routed_assets",
    "routed_from",
    "router",
)
