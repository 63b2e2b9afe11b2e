"""The ``@scatter`` decorator: turns an asset into one that runs once per item."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from flowstone import AssetDef, InvalidAssetError, RateLimiter, Retry
from flowstone.protocols import ItemReader, attach_kind

from ._progress import load_tqdm
from ._spec import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_PAGE_SIZE,
    GatherFn,
    ItemsFn,
    ScatterSpec,
    check_item_parameter,
)

if TYPE_CHECKING:
    from ._batch import Batch

__all__ = ["scatter"]

F = TypeVar("F", bound=Callable[..., Any])


def scatter(
    items: ItemsFn | None = None,
    *,
    reader: ItemReader[Any] | str | None = None,
    key: Callable[[Any], str] | None = None,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    rate: RateLimiter | float | None = None,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    tolerated_failure: int | float = 0,
    batch: Batch | None = None,
    gather: GatherFn | None = None,
    coordinator: str | None = None,
    progress: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Callable[[F], F]:
    """Make an asset run its function once per item of a source, and gather the results.

    Use it with ``@fs.asset``, on either side. The function's parameter named ``item``
    receives the item (with ``batch=``, the list of a batch's items); its context and
    dependencies work as in a plain asset, and ``ctx.scatter_key`` is the item's key::

        @fs.asset
        @scatter(items=lambda deps: deps["orders"], key=lambda o: o["id"],
                 max_concurrent=50, tolerated_failure=0.01, retry=fs.Retry(attempts=3))
        async def enriched(ctx: fs.Context, item: dict) -> dict: ...

    The asset's value is the list of successful results in source order, or what
    ``gather`` returns. Its record carries a summary in ``metadata["scatter"]``. A plain
    (non-async) function runs in worker threads, so anyio's thread limit (40 by default)
    also bounds its concurrency.

    :param items: ``items(deps)``: the items, from the dependency values by asset name: an
        iterable, an async iterable (or an awaitable of one). Names it reads with a literal
        key (``deps["orders"]``) become dependencies of the asset; declare others with
        ``@fs.asset(deps=[...])``
    :param reader: instead of ``items``, an :class:`~flowstone.protocols.ItemReader` or the
        name of one registered in ``runtime.item_readers``; read page by page
    :param key: ``key(item)``: the item's key, a unique string (an int is turned into
        one); default: the item's position. Custom keys are remembered to detect
        duplicates, which is an error naming the key
    :param max_concurrent: items (batches) that run at once, exactly
    :param rate: a :class:`~flowstone.RateLimiter` (share one across assets and runs), or a
        number of items per second; every attempt takes a token
    :param retry: per-item retries: a :class:`~flowstone.Retry` or a number of attempts;
        a retried item counts once
    :param timeout: seconds one attempt of one item may take (a plain function's worker
        thread is abandoned at the deadline: it runs on in the background)
    :param tolerated_failure: items that may fail while the asset still succeeds: an ``int``
        count or a ``float`` fraction of the total (see ``threshold_exceeded``); past it,
        in-flight items are cancelled and the asset fails with
        :class:`ScatterFailureThresholdExceeded`
    :param batch: group items into batches (:class:`Batch`)
    :param gather: ``async gather(results)``: the asset's value from an async iterator of
        ``(key, result)`` in source order (failed items left out); memory stays bounded
    :param coordinator: run on the coordinator registered under this name instead of the
        runtime's ``"scatter"`` coordinator
    :param progress: draw a progress bar (needs the ``progress`` extra: tqdm)
    :param page_size: items read at once from a reader or an iterator
    :return: a decorator that returns the function (or asset) it was given, made a scatter
    :raises InvalidAssetError: an option is invalid, or the function has no ``item``
        parameter (raised when the decorator is applied)
    :raises MissingExtraError: ``progress=True`` and tqdm is not installed
    """

    def decorate(target: F) -> F:
        if isinstance(target, AssetDef):
            name, fn = target.name, target.fn
        else:
            name, fn = getattr(target, "__name__", repr(target)), target
        try:
            spec = ScatterSpec(
                items=items,
                reader=reader,
                key=key,
                max_concurrent=max_concurrent,
                rate=rate,
                retry=retry,  # type: ignore[arg-type]  # the spec coerces an int to a Retry
                timeout=timeout,
                tolerated_failure=tolerated_failure,
                batch=batch,
                gather=gather,
                coordinator=coordinator,
                progress=progress,
                page_size=page_size,
            )
        except ValueError as exc:
            raise InvalidAssetError(name, str(exc)) from None
        check_item_parameter(fn, name)
        if progress:
            load_tqdm()
        return attach_kind(target, spec)  # type: ignore[no-any-return]  # the same object or an AssetDef

    return decorate
