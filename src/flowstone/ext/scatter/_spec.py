"""``ScatterSpec``: the options of a scatter asset, validated once, shared by coordinators.

The ``@scatter`` decorator attaches a :class:`ScatterSpec` to the asset; the materializer
hands every asset carrying one to the coordinator registered for the ``"scatter"`` kind
(or the one the spec pins). Any coordinator, in-process or durable, reads the same spec.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from flowstone import InvalidAssetError, RateLimiter, Retry
from flowstone.protocols import AssetKind, ItemReader

from ._batch import Batch
from ._fingerprint import callable_fingerprint, read_dependency_names
from ._summary import check_tolerated_failure

if TYPE_CHECKING:
    from flowstone import AssetDef, Pipeline

__all__ = [
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_PAGE_SIZE",
    "GatherFn",
    "ItemsFn",
    "ScatterSpec",
    "coerce_rate",
]

#: Items (or batches) that run at once when ``max_concurrent`` is not given.
DEFAULT_MAX_CONCURRENT = 10
#: Items read per page from a reader or an iterator when ``page_size`` is not given.
DEFAULT_PAGE_SIZE = 1000

#: ``items=``: called with the dependency values by asset name; returns the items.
ItemsFn = Callable[
    [Mapping[str, Any]], Iterable[Any] | AsyncIterable[Any] | Awaitable[Iterable[Any]]
]
#: ``gather=``: called with an async iterator of ``(key, result)`` in source order.
GatherFn = Callable[[Any], Any]


def coerce_rate(rate: RateLimiter | float | None) -> RateLimiter | None:
    """The limiter for a ``rate=`` option: a :class:`~flowstone.RateLimiter` as is, a
    number as that many items a second (a fresh limiter each call), ``None`` as none.

    :raises ValueError: naming ``rate`` when it is none of these
    """
    if rate is None or isinstance(rate, RateLimiter):
        return rate
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"rate must be a RateLimiter or items per second, not {rate!r}")
    if not 0 < rate < math.inf:
        raise ValueError(f"rate must be positive and finite, not {rate!r}")
    return RateLimiter(rate, 1.0)


def _check_positive_int(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


@dataclass(frozen=True, eq=False)
class ScatterSpec(AssetKind):
    """The options of one scatter asset (see :func:`~flowstone.ext.scatter.scatter`).

    Exactly one of ``items`` and ``reader`` is the source.

    :raises ValueError: naming the option that is invalid
    """

    kind: ClassVar[str] = "scatter"
    reserved_params: ClassVar[frozenset[str]] = frozenset({"item"})

    items: ItemsFn | None = None
    reader: ItemReader[Any] | str | None = None
    key: Callable[[Any], str] | None = None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    rate: RateLimiter | float | None = None
    retry: Retry | None = None
    timeout: float | None = None
    tolerated_failure: int | float = 0
    batch: Batch | None = None
    gather: GatherFn | None = None
    coordinator: str | None = None
    progress: bool = False
    page_size: int = DEFAULT_PAGE_SIZE
    #: Asset names ``items=`` reads with a literal key (``deps["orders"]``); they become
    #: ordering dependencies of the asset, and their values are loaded for ``items=``.
    item_deps: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if (self.items is None) == (self.reader is None):
            raise ValueError(
                "scatter needs exactly one source: items= (a callable of the dependencies) "
                "or reader= (an ItemReader or a registered reader name)"
            )
        if self.items is not None and not callable(self.items):
            raise ValueError(
                "items= must be a callable of the dependencies, e.g. "
                f"items=lambda deps: deps['orders'], not {type(self.items).__name__}"
            )
        if self.reader is not None and not (isinstance(self.reader, str) and self.reader):
            if not isinstance(self.reader, ItemReader):
                raise ValueError(
                    "reader= must be an ItemReader (with read_page and count) or the name "
                    f"of a registered reader, not {self.reader!r}"
                )
        for name in ("key", "gather"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ValueError(f"{name}= must be callable, not {value!r}")
        _check_positive_int(self.max_concurrent, "max_concurrent")
        _check_positive_int(self.page_size, "page_size")
        coerce_rate(self.rate)
        if self.retry is not None:
            try:
                object.__setattr__(self, "retry", Retry.coerce(self.retry))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"retry= is invalid: {exc}") from None
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not 0 < self.timeout < math.inf
        ):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        check_tolerated_failure(self.tolerated_failure)
        if self.batch is not None and not isinstance(self.batch, Batch):
            raise ValueError(f"batch= must be a Batch(...), not {self.batch!r}")
        if self.coordinator is not None and (
            not isinstance(self.coordinator, str) or not self.coordinator
        ):
            raise ValueError(
                f"coordinator= must be a registered coordinator name, not {self.coordinator!r}"
            )
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress= must be True or False, not {self.progress!r}")
        deps = read_dependency_names(self.items) if self.items is not None else ()
        object.__setattr__(self, "item_deps", deps)

    # -- AssetKind hooks ---------------------------------------------------------------

    def extra_deps(self) -> tuple[str, ...]:
        """The asset names ``items=`` reads: they run first, and feed the data version."""
        return self.item_deps

    def validate(self, asset: AssetDef[..., Any], pipeline: Pipeline) -> None:
        """Check that the asset's function takes an ``item`` parameter."""
        check_item_parameter(asset.fn, asset.name)

    def fingerprint(self) -> str:
        """The options that change the asset's value (not limits such as concurrency)."""
        reader = (
            self.reader
            if isinstance(self.reader, str) or self.reader is None
            else type(self.reader).__qualname__
        )
        return (
            f"scatter(items={callable_fingerprint(self.items)}, reader={reader}, "
            f"key={callable_fingerprint(self.key)}, "
            f"batch={self.batch.fingerprint() if self.batch is not None else '-'}, "
            f"gather={callable_fingerprint(self.gather)}, "
            f"tolerated_failure={self.tolerated_failure!r})"
        )

    # -- helpers for coordinators -------------------------------------------------------

    def limiter(self) -> RateLimiter | None:
        """The rate limiter for one execution (a number makes a fresh one each time)."""
        return coerce_rate(self.rate)

    def __repr__(self) -> str:
        source = "items" if self.items is not None else f"reader={self.reader!r}"
        return (
            f"ScatterSpec({source}, max_concurrent={self.max_concurrent}, "
            f"tolerated_failure={self.tolerated_failure!r}"
            + (", batched" if self.batch is not None else "")
            + (f", coordinator={self.coordinator!r}" if self.coordinator else "")
            + ")"
        )


def check_item_parameter(fn: Callable[..., Any], asset: str) -> None:
    """Raise :class:`~flowstone.InvalidAssetError` unless ``fn`` takes ``item`` by name."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover - AssetDef reports these itself
        return
    param = parameters.get("item")
    if param is None or param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
        raise InvalidAssetError(
            asset, "a scatter function needs a parameter named 'item' that receives the item"
        )
