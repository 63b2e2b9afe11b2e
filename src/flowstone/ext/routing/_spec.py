"""Declaring routes: :func:`router`, :func:`choice` and :func:`routed_from`.

A *router* asset decides which one of its *routed* assets runs in a run (or that none
does); the others, and their descendants, are skipped. The router's value is its decision:
the chosen asset's name, or ``None``. A routed asset depends on its router for ordering
only (a dashed edge in graphs).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

from flowstone import AssetDef
from flowstone.protocols import AssetKind, attach_kind, code_fingerprint

from ._errors import InvalidChoiceError, InvalidRoutedAssetError, RoutingDefinitionError

if TYPE_CHECKING:
    from flowstone import Pipeline

__all__ = [
    "Choice",
    "OnError",
    "RoutedSpec",
    "RouterSpec",
    "choice",
    "routed_assets",
    "routed_from",
    "router",
]

F = TypeVar("F", bound=Callable[..., Any])

#: What a router does when deciding raises: fail the router, or take its default.
OnError = Literal["fail", "default"]
_ON_ERROR: tuple[str, ...] = get_args(OnError)

#: A choice's predicate: it receives the router's inputs by asset name.
Predicate = Callable[[Mapping[str, Any]], bool | Awaitable[bool]]


def _name_of(target: str | AssetDef[..., Any], what: str) -> str:
    if isinstance(target, AssetDef):
        return target.name
    if isinstance(target, str) and target:
        return target
    raise RoutingDefinitionError(None, f"{what} must be an asset or an asset name, got {target!r}")


@dataclass(frozen=True, slots=True)
class Choice:
    """One declarative choice of a router: run ``asset`` when ``when(deps)`` is true.

    Made by :func:`choice`.
    """

    asset: str
    when: Predicate


def choice(asset: str | AssetDef[..., Any], *, when: Predicate) -> Choice:
    """A choice for :func:`router`: pick ``asset`` when ``when(deps)`` is true.

    :param asset: the routed asset to run (a name or the asset)
    :param when: a predicate receiving the router's inputs as a mapping by asset name (and
        by parameter name where that differs); it may be a coroutine function
    :return: the choice
    :raises RoutingDefinitionError: ``asset`` is not an asset or ``when`` is not callable
    """
    name = _name_of(asset, "a choice's asset")
    if not callable(when):
        raise RoutingDefinitionError(None, f"choice {name!r}: when= must be callable, got {when!r}")
    return Choice(asset=name, when=when)


def routed_assets(pipeline: Pipeline, router: str) -> tuple[str, ...]:
    """The assets of ``pipeline`` routed from ``router``, in dependency order."""
    return tuple(
        name
        for name, asset_def in pipeline.assets.items()
        if isinstance(asset_def.kind_spec, RoutedSpec) and asset_def.kind_spec.router == router
    )


@dataclass(frozen=True)
class RouterSpec(AssetKind):
    """The kind of a router asset: its choices, default and error policy.

    Attached by :func:`router`; executed by the coordinator registered as ``"router"``.
    """

    kind: ClassVar[str] = "router"

    choices: tuple[Choice, ...] = ()
    default: str | None = None
    on_error: OnError = "fail"

    def __post_init__(self) -> None:
        for item in self.choices:
            if not isinstance(item, Choice):
                raise RoutingDefinitionError(
                    None, f"router() takes choice(...) objects, got {item!r}"
                )
        if self.on_error not in _ON_ERROR:
            raise RoutingDefinitionError(
                None,
                f"on_error must be one of {', '.join(map(repr, _ON_ERROR))}, got {self.on_error!r}",
            )

    @property
    def declarative(self) -> bool:
        """Whether the choices decide (else the router function's return value does)."""
        return bool(self.choices)

    def fingerprint(self) -> str:
        """The choices (with a digest of each predicate's code), default and policy."""
        choices = ", ".join(f"{c.asset}:{code_fingerprint(c.when)}" for c in self.choices)
        return f"router([{choices}], default={self.default!r}, on_error={self.on_error!r})"

    def validate(self, asset: AssetDef[..., Any], pipeline: Pipeline) -> None:
        """Check that every choice and the default name an asset routed from this router.

        :raises InvalidChoiceError: a choice or the default is missing or not routed from it
        """
        routed = routed_assets(pipeline, asset.name)
        named = [c.asset for c in self.choices]
        if self.default is not None:
            named.append(self.default)
        available = pipeline.assets
        for name in named:
            if name not in available:
                raise InvalidChoiceError(asset.name, name, routed, "is not in the pipeline")
            if name not in routed:
                raise InvalidChoiceError(
                    asset.name,
                    name,
                    routed,
                    f"is not routed from it; decorate it with @routed_from({asset.name!r})",
                )


@dataclass(frozen=True)
class RoutedSpec(AssetKind):
    """The kind of a routed asset: the router that decides whether it runs.

    Attached by :func:`routed_from`; executed by the coordinator registered as ``"routed"``.
    """

    kind: ClassVar[str] = "routed"
    #: Skipped exactly when its router (an input) chose another asset.
    skips_follow_inputs: ClassVar[bool] = True

    router: str

    def extra_deps(self) -> tuple[str, ...]:
        """The router: it must decide before the routed asset runs."""
        return (self.router,)

    def edge_style(self, dependency: str) -> str:
        """Dashed for the edge from the router, solid for the others."""
        return "dashed" if dependency == self.router else "solid"

    def validate(self, asset: AssetDef[..., Any], pipeline: Pipeline) -> None:
        """Check that the router exists and is a router.

        :raises InvalidRoutedAssetError: it does not exist or is not a router
        """
        available = pipeline.assets
        if self.router not in available:
            raise InvalidRoutedAssetError(asset.name, self.router, "which is not in the pipeline")
        router_def = available[self.router]
        if not isinstance(router_def.kind_spec, RouterSpec):
            raise InvalidRoutedAssetError(
                asset.name,
                self.router,
                f"which is not a router (it is a {router_def.kind!r} asset; decorate it with @router(...))",
            )


def router(
    *choices: Choice,
    default: str | AssetDef[..., Any] | None = None,
    on_error: OnError = "fail",
) -> Callable[[F], F]:
    """Make an asset a router: it picks one of its routed assets, or none, to run.

    Use it on either side of ``@fs.asset``. With choices, the router decides declaratively:
    the first :func:`choice` whose ``when`` is true wins, else ``default`` (``None``: no
    routed asset runs); the decorated function only declares the router's inputs through
    its parameters and is not called. Without choices (``@router()``), the decorated
    function decides: it returns the chosen routed asset's name (or the asset), or ``None``.

    The router's value is its decision: the chosen name, or ``None``. The decision is
    recorded and reused when the same run is materialized again (``force=True`` decides
    again).

    :param choices: declarative choices, tried in order
    :param default: the routed asset taken when no choice matches, and by
        ``on_error="default"`` (without choices, only by the latter)
    :param on_error: ``"fail"`` (default): an exception while deciding fails the router (its
        routed assets are then skipped); ``"default"``: the router takes ``default``.
        A decision naming an asset that is not routed from the router is always an error
        (:class:`InvalidRouteError`).
    :return: a decorator for the router's function (or asset)
    :raises RoutingDefinitionError: a bad choice, default or ``on_error``
    """
    default_name = None if default is None else _name_of(default, "default")
    spec = RouterSpec(choices=tuple(choices), default=default_name, on_error=on_error)

    def decorate(target: F) -> F:
        result: F = attach_kind(target, spec)
        return result

    return decorate


def routed_from(router: str | AssetDef[..., Any]) -> Callable[[F], F]:
    """Make an asset run only when ``router`` chooses it; otherwise it is skipped.

    Use it on either side of ``@fs.asset``. When it is not chosen the asset is recorded as
    ``skipped``, and so are its descendants, unless they list it in ``optional_deps``.

    :param router: the router (a name or the asset)
    :return: a decorator for the asset's function (or asset)
    :raises RoutingDefinitionError: ``router`` is not an asset or a name
    """
    spec = RoutedSpec(router=_name_of(router, "routed_from()'s router"))

    def decorate(target: F) -> F:
        result: F = attach_kind(target, spec)
        return result

    return decorate
