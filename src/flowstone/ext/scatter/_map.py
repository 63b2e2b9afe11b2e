"""``scatter_map``: the scatter engine for code outside a pipeline."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from flowstone.protocols import ItemReader

from ._engine import ScatterEngine
from ._progress import ScatterReporter
from ._runner import ItemRunner, function_call
from ._sources import open_feed
from ._spec import DEFAULT_MAX_CONCURRENT, DEFAULT_PAGE_SIZE, ScatterSpec

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowstone import RateLimiter, Retry

    from ._batch import Batch
    from ._spec import GatherFn, ItemsFn

__all__ = ["scatter_map"]


def _is_async(fn: Callable[..., Any]) -> bool:
    target = inspect.unwrap(fn)
    if inspect.iscoroutinefunction(target):
        return True
    call = inspect.getattr_static(type(target), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def _constant(value: Any) -> ItemsFn:
    def items(deps: Mapping[str, Any]) -> Any:
        return value

    return items


async def scatter_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any]
    | AsyncIterable[Any]
    | ItemReader[Any]
    | Awaitable[Iterable[Any] | AsyncIterable[Any]],
    *,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT,
    key: Callable[[Any], str] | None = None,
    rate: RateLimiter | float | None = None,
    retry: Retry | int | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - a per-item limit, as in @scatter
    tolerated_failure: int | float = 0,
    batch: Batch | None = None,
    gather: GatherFn | None = None,
    progress: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Any:
    """Call ``fn`` on every item with bounded concurrency, outside any pipeline.

    The same engine and options as :func:`scatter`: ``fn(item)`` (async, or plain and run
    in worker threads) is called once per item (with ``batch=``, once per batch with the
    list of its items), and the results are gathered::

        pages = await scatter_map(fetch, urls, max_concurrent=20, retry=3)

    :param fn: the function of one item (or of one batch's list)
    :param items: an iterable, an async iterable, an :class:`~flowstone.protocols.ItemReader`,
        or an awaitable of an iterable
    :param max_concurrent: calls in flight at most, exactly
    :param key: ``key(item)``: the item's key (default: its position), used in failure
        reports and ``gather``
    :param rate: a :class:`~flowstone.RateLimiter` or calls per second
    :param retry: per-item retries (a :class:`~flowstone.Retry` or a number of attempts)
    :param timeout: seconds one call may take
    :param tolerated_failure: failures tolerated, an ``int`` count or ``float`` fraction
    :param batch: batching options (a callable ``batch_input`` is called with ``{}``)
    :param gather: ``async gather(results)`` over ``(key, result)`` in source order
    :param progress: draw a progress bar (needs the ``progress`` extra)
    :param page_size: items read at once from a reader or an iterator
    :return: the successful results in source order, or ``gather``'s value
    :raises ValueError: an option is invalid
    :raises ScatterFailureThresholdExceeded: more items failed than tolerated
    :raises DuplicateScatterKeyError: two items have the same key
    """
    reader: ItemReader[Any] | None = None
    if isinstance(items, ItemReader) and not isinstance(items, Iterable | AsyncIterable):
        reader = items
    spec = ScatterSpec(  # validates the options exactly as @scatter does
        items=None if reader is not None else _constant(items),
        reader=reader,
        key=key,
        max_concurrent=max_concurrent,
        rate=rate,
        retry=retry,  # type: ignore[arg-type]  # the spec coerces an int to a Retry
        timeout=timeout,
        tolerated_failure=tolerated_failure,
        batch=batch,
        gather=gather,
        progress=progress,
        page_size=page_size,
    )
    name = f"scatter_map({getattr(fn, '__name__', type(fn).__name__)})"
    is_async = _is_async(fn)
    threads = None if is_async else anyio.CapacityLimiter(max_concurrent)
    call = function_call(fn, is_async=is_async, limiter=threads)
    runner = ItemRunner(
        call,
        retry=spec.retry,
        timeout=spec.timeout,
        limiter=spec.limiter(),
        needs_key=False,
        by_position=call,
    )
    batch_input = None
    if batch is not None:
        batch_input = batch.batch_input({}) if callable(batch.batch_input) else batch.batch_input
        if inspect.isawaitable(batch_input):
            batch_input = await batch_input
    reporter = (
        ScatterReporter(emit=None, per_item=False, bar=True, run_id="", asset=name, partition=None)
        if progress
        else None
    )
    feed = await open_feed(items, page_size=page_size)
    engine = ScatterEngine(
        feed,
        runner,
        max_concurrent=max_concurrent,
        key=key,
        tolerated_failure=tolerated_failure,
        batch=batch,
        batch_input=batch_input,
        gather=gather,
        reporter=reporter,
        asset=name,
    )
    return await engine.run()
