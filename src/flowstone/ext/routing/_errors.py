"""The errors of routing: bad router or routed definitions, and invalid decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone import DefinitionError, ExecutionError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "InvalidChoiceError",
    "InvalidRouteError",
    "InvalidRoutedAssetError",
    "RoutingDefinitionError",
]


class RoutingDefinitionError(DefinitionError):
    """A router or a routed asset is declared wrongly.

    :param asset: the asset at fault, when known
    :param reason: what is wrong
    """

    def __init__(self, asset: str | None, reason: str) -> None:
        self.asset = asset
        self.reason = reason
        super().__init__(f"asset {asset!r}: {reason}" if asset else reason)


class InvalidRoutedAssetError(RoutingDefinitionError):
    """A routed asset's router does not exist or is not a router.

    :param asset: the routed asset
    :param router: the name it is routed from
    """

    def __init__(self, asset: str, router: str, reason: str) -> None:
        self.router = router
        super().__init__(asset, f"routed from {router!r}, {reason}")


class InvalidChoiceError(RoutingDefinitionError):
    """A router's choice (or default) names an asset that is not routed from that router.

    :param router: the router
    :param choice: the asset the choice names
    :param routed: the assets routed from the router
    """

    def __init__(self, router: str, choice: str, routed: Sequence[str], reason: str) -> None:
        self.router = router
        self.choice = choice
        self.routed = tuple(routed)
        shown = ", ".join(repr(r) for r in self.routed) or "none"
        super().__init__(router, f"choice {choice!r} {reason} (routed from it: {shown})")


class InvalidRouteError(ExecutionError):
    """A router chose an asset that is not one of its routed assets.

    :param router: the router
    :param chosen: what it chose
    :param routed: the assets routed from it
    :param run_id: the run's id
    :param partition: the partition key, or ``None``
    """

    def __init__(
        self,
        router: str,
        chosen: object,
        routed: Sequence[str],
        run_id: str,
        partition: str | None,
    ) -> None:
        self.router = router
        self.chosen = chosen
        self.routed = tuple(routed)
        self.run_id = run_id
        self.partition = partition
        where = f" partition {partition!r}" if partition is not None else ""
        shown = ", ".join(repr(r) for r in self.routed) or "none"
        super().__init__(
            f"router {router!r}{where} in run {run_id!r} chose {chosen!r}, which is not one of "
            f"its routed assets ({shown}); return one of them or None"
        )
