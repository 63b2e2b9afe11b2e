"""The routing event: a router decided (or reused its recorded decision)."""

from __future__ import annotations

from dataclasses import dataclass

from flowstone.events import AssetEvent

__all__ = ["RouteDecided"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDecided(AssetEvent):
    """Router ``asset`` chose ``chosen`` (``None``: none of its routed assets).

    ``via`` says how: ``"choice"`` (a ``when=`` matched), ``"default"`` (none matched),
    ``"function"`` (the router function's return value), ``"on_error"`` (the router raised
    and ``on_error="default"`` took the default) or ``"recorded"`` (the decision recorded
    earlier in the run was reused); ``reused`` is true for the last.
    """

    chosen: str | None
    via: str
    reused: bool = False
    error: BaseException | None = None
