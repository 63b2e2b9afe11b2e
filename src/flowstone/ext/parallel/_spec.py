"""Declaring parallel assets: :func:`branch`, :func:`parallel`, :func:`parallel_asset`.

A parallel asset materializes the terminal asset of each of its branches concurrently, in
its own run and partition, then joins them. The :class:`ParallelSpec` attached to the asset
makes the branch terminals *owned* dependencies: they are graph edges, but the run does not
schedule them ahead of the parallel asset — its coordinator materializes them itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

from flowstone import AssetDef
from flowstone.protocols import AssetKind, attach_kind

from ._errors import ParallelDefinitionError, UnknownBranchError

if TYPE_CHECKING:
    from flowstone import Pipeline

    from ._outcomes import Branches

__all__ = ["Branch", "FailureMode", "ParallelSpec", "branch", "parallel", "parallel_asset"]

F = TypeVar("F", bound=Callable[..., Any])

#: How a parallel asset treats failed branches.
FailureMode = Literal["all_or_nothing", "partial"]
_FAILURE_MODES: tuple[str, ...] = get_args(FailureMode)


def _check_timeout(timeout: float | None, what: str, asset: str | None = None) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ParallelDefinitionError(
            asset, f"{what} timeout must be a number of seconds, got {timeout!r}"
        )
    if not timeout > 0 or math.isnan(timeout):
        raise ParallelDefinitionError(asset, f"{what} timeout must be positive, got {timeout!r}")


@dataclass(frozen=True, slots=True)
class Branch:
    """One branch of a parallel asset: a name and the terminal asset of its sub-graph.

    Made by :func:`branch`.
    """

    name: str
    final: str
    required: bool = True
    timeout: float | None = None


def branch(
    name: str,
    *,
    final: str | AssetDef[..., Any] | None = None,
    required: bool = True,
    timeout: float | None = None,
) -> Branch:
    """Declare a branch of a parallel asset.

    :param name: the branch's name: the key of its value in ``branches``
    :param final: the terminal asset of the branch's sub-graph (a name or the asset); it is
        materialized with its upstream. Default: the asset named ``name``.
    :param required: in ``failure_mode="partial"``, whether the join waits for this branch
        and fails when it fails; an optional branch still running when every required one is
        done is cancelled and recorded ``skipped``. In ``"all_or_nothing"`` mode every
        failure fails the asset.
    :param timeout: seconds the branch may take; past it the branch is cancelled and failed
    :return: the branch, for :func:`parallel`
    :raises ParallelDefinitionError: an empty name or a non-positive timeout
    """
    if not isinstance(name, str) or not name:
        raise ParallelDefinitionError(None, f"a branch needs a non-empty name, got {name!r}")
    if isinstance(final, AssetDef):
        final_name = final.name
    elif final is None:
        final_name = name
    elif isinstance(final, str) and final:
        final_name = final
    else:
        raise ParallelDefinitionError(
            None, f"branch {name!r}: final must be an asset or an asset name, got {final!r}"
        )
    _check_timeout(timeout, f"branch {name!r}:")
    return Branch(name=name, final=final_name, required=bool(required), timeout=timeout)


@dataclass(frozen=True)
class ParallelSpec(AssetKind):
    """The kind of a parallel asset: its branches, failure mode and overall timeout.

    Attached by :func:`parallel`; executed by the coordinator registered as ``"parallel"``.
    """

    kind: ClassVar[str] = "parallel"
    reserved_params: ClassVar[frozenset[str]] = frozenset({"branches"})

    branches: tuple[Branch, ...]
    failure_mode: FailureMode = "all_or_nothing"
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.branches:
            raise ParallelDefinitionError(None, "parallel() needs at least one branch")
        names: set[str] = set()
        for item in self.branches:
            if not isinstance(item, Branch):
                raise ParallelDefinitionError(
                    None, f"parallel() takes branch(...) objects, got {item!r}"
                )
            if item.name in names:
                raise ParallelDefinitionError(None, f"two branches are named {item.name!r}")
            names.add(item.name)
        if self.failure_mode not in _FAILURE_MODES:
            raise ParallelDefinitionError(
                None,
                f"failure_mode must be one of {', '.join(map(repr, _FAILURE_MODES))}, "
                f"got {self.failure_mode!r}",
            )
        _check_timeout(self.timeout, "the overall")

    def owned_deps(self) -> tuple[str, ...]:
        """The branches' terminal assets: materialized by the coordinator, not the run."""
        return tuple(dict.fromkeys(b.final for b in self.branches))

    def branch(self, name: str) -> Branch:
        """The branch called ``name``.

        :raises KeyError: no such branch
        """
        for item in self.branches:
            if item.name == name:
                return item
        raise KeyError(name)

    def validate(self, asset: AssetDef[..., Any], pipeline: Pipeline) -> None:
        """Check that every branch ends at an asset of the pipeline, and that no input of the
        join is a branch terminal (it arrives through ``branches``).

        :raises UnknownBranchError: a branch's terminal asset is not in the pipeline
        :raises ParallelDefinitionError: the join takes a branch terminal as an input
        """
        available = pipeline.assets
        for item in self.branches:
            if item.final not in available:
                raise UnknownBranchError(asset.name, item.name, item.final)
            if item.final == asset.name:
                raise ParallelDefinitionError(
                    asset.name, f"branch {item.name!r} cannot end at the parallel asset itself"
                )
        finals = {b.final: b.name for b in self.branches}
        for param, dep in asset.inputs.items():
            if dep in finals:
                raise ParallelDefinitionError(
                    asset.name,
                    f"parameter {param!r} takes asset {dep!r}, the end of branch "
                    f"{finals[dep]!r}; read it as branches[{finals[dep]!r}] instead",
                )


def parallel(
    *branches: Branch,
    failure_mode: FailureMode = "all_or_nothing",
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Make an asset run branches concurrently and join their results.

    Use it on either side of ``@fs.asset``. The decorated function is the *join*: it takes
    the branch results in a parameter named ``branches`` (a :class:`Branches`) and any other
    inputs by name, as every asset does; its return value is the asset's value::

        @fs.asset
        @parallel(branch("maps", final="generate_maps"), branch("news", final="front_pages"))
        async def gathered(branches: Branches, region: str) -> dict:
            return {"maps": branches["maps"], "news": branches["news"], "region": region}

    Each branch's terminal asset is materialized (with its upstream) in the same run and
    partition, concurrently. A branch whose terminal asset is skipped is ``skipped``; when
    a *required* branch is skipped the parallel asset is skipped too.

    :param branches: the branches, made with :func:`branch`
    :param failure_mode: ``"all_or_nothing"`` (default): any failed branch fails the asset,
        naming it, and cancels the others. ``"partial"``: the join runs once the required
        branches are done; optional branches still running then are cancelled and
        ``skipped``, failed optional ones are left out of ``branches``. A failed required
        branch fails the asset in both modes. With no required branch, ``"partial"`` waits
        for every branch (within the timeouts).
    :param timeout: seconds for all branches together. When it expires, pending optional
        branches (in ``"partial"`` mode) are skipped and pending required ones fail the
        asset with :class:`ParallelTimeoutError`.
    :return: a decorator for the join function (or for an asset)
    :raises ParallelDefinitionError: no branches, duplicate names, a bad mode or timeout
    """
    spec = ParallelSpec(branches=tuple(branches), failure_mode=failure_mode, timeout=timeout)

    def decorate(target: F) -> F:
        result: F = attach_kind(target, spec)
        return result

    return decorate


async def _gather_branches(branches: Branches) -> dict[str, Any]:
    """The branch values by branch name."""
    return dict(branches)


def parallel_asset(
    name: str,
    *branches: Branch,
    failure_mode: FailureMode = "all_or_nothing",
    timeout: float | None = None,
    **asset_options: Any,
) -> AssetDef[..., dict[str, Any]]:
    """A parallel asset without a join function: its value is ``{branch name: value}``.

    Only succeeded branches are in the mapping (an optional branch that failed or was
    skipped is absent), exactly as in :class:`Branches`::

        gathered = parallel_asset("gathered", branch("maps", final="generate_maps"),
                                  branch("news", final="front_pages"))

    :param name: the asset's name
    :param branches: the branches, made with :func:`branch`
    :param failure_mode: as for :func:`parallel`
    :param timeout: the overall timeout, as for :func:`parallel`
    :param asset_options: options for ``fs.asset`` (``io_manager``, ``partitions``,
        ``retry``, ``metadata``, ``description``, ``tags``, ``code_version``…)
    :return: the asset
    :raises ParallelDefinitionError: as for :func:`parallel`
    """
    spec = ParallelSpec(branches=tuple(branches), failure_mode=failure_mode, timeout=timeout)
    options: dict[str, Any] = dict(asset_options)
    options.setdefault(
        "description", "Branches " + ", ".join(repr(b.name) for b in spec.branches) + " gathered"
    )
    try:
        return AssetDef(_gather_branches, name=name, kind_spec=spec, **options)
    except TypeError as exc:
        raise ParallelDefinitionError(name, f"unknown asset option: {exc}") from None
