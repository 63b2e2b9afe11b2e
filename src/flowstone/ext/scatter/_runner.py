"""Running one item (or one batch) to its outcome: rate limit, timeout and retries.

:class:`ItemRunner` is what every scatter coordinator uses to execute an item, so the
per-item semantics are the same in-process and durable: before each attempt it takes a
token from the rate limiter, the attempt runs under the per-item timeout, and a failed
attempt is retried as the ``Retry`` policy says (after its delay). An item that needed
several attempts is still one item. :func:`invocation_call` builds the call that runs an
asset's function for one item with its own context (``ctx.scatter_key``, and
``ctx.batch_index`` / ``batch_count`` / ``batch_input`` for batches).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from flowstone.protocols import CURRENT_CONTEXT as _current
from flowstone.protocols import Invocation, call_with_timeout, run_in_thread

from ._batch import BatchInfo
from ._errors import BatchResultError, ItemTimeoutError
from ._item_context import ItemContext

if TYPE_CHECKING:
    from flowstone import Context, RateLimiter, Retry

__all__ = ["ItemCall", "ItemRunner", "Outcome", "function_call", "invocation_call"]

of = ItemContext.of

#: ``call(key, item_or_items, batch)``: one attempt of the user's function.
ItemCall = Callable[[str, Any, BatchInfo | None], Awaitable[Any]]
#: ``(ok, value_or_error, attempts)``
Outcome = tuple[bool, Any, int]


def invocation_call(invocation: Invocation, *, own_task: bool = False) -> ItemCall:
    """The call that runs a scatter asset's function for one item (or batch).

    The function gets its inputs and context as in a plain asset, with the context made
    for the item (an :class:`ItemContext`) and ``item=`` the item, or the list
    of items of a batch. It behaves as :meth:`Invocation.call` (``fs.current_context()``
    is the item's context); for an async function it builds the keyword arguments from a
    template made once per scatter instead of once per item.

    :param own_task: the caller awaits each call in a worker task of its own that ends
        when the scatter does (as the engine's workers are); the current context is then
        set for the item and not restored afterwards, which saves a coroutine per item
        (the task's context copy is private to it)
    """
    base = invocation.context
    asset = invocation.asset

    item_context: Callable[[str, BatchInfo | None], Context] = functools.partial(of, base)

    if type(invocation) is not Invocation or not asset.is_async:
        call = invocation.call

        async def run_item(key: str, item: Any, batch: BatchInfo | None) -> Any:
            return await call(item_context(key, batch), item=item)

        return run_item

    fn = asset.fn
    ctx_param = asset.context_param
    template = dict(invocation.inputs)
    current = _current

    def start_item(key: str, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
        """Set the item's context as current and return the function's coroutine."""
        ctx = item_context(key, batch)
        if template:
            kwargs = template.copy()
            kwargs["item"] = item
            if ctx_param is not None:
                kwargs[ctx_param] = ctx
        elif ctx_param is not None:
            kwargs = {ctx_param: ctx, "item": item}
        else:
            kwargs = {"item": item}
        current.set(ctx)
        return fn(**kwargs)

    if own_task:
        return start_item

    async def run_async_item(key: str, item: Any, batch: BatchInfo | None) -> Any:
        token = current.set(current.get())  # restored below, whatever start_item sets
        try:
            return await start_item(key, item, batch)
        finally:
            current.reset(token)

    return run_async_item


def function_call(
    fn: Callable[[Any], Any], *, is_async: bool, limiter: anyio.CapacityLimiter | None = None
) -> ItemCall:
    """The call for a plain function of the item (``scatter_map``).

    Plain functions run in worker threads, at most ``limiter``'s tokens at once; if one
    returns an awaitable (``lambda item: fetch(item)``), it is awaited on the loop.
    """
    if is_async:

        async def run_async(key: str, item: Any, batch: BatchInfo | None) -> Any:
            return await fn(item)

        return run_async

    async def run_sync(key: str, item: Any, batch: BatchInfo | None) -> Any:
        value = await run_in_thread(functools.partial(fn, item), limiter=limiter)
        if inspect.isawaitable(value):  # a plain callable that returns a coroutine
            value = await value
        return value

    return run_sync


def _shape(value: Any) -> str:
    if isinstance(value, Sequence):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


class ItemRunner:
    """Executes items and batches with the scatter's rate limit, timeout and retry policy.

    :param call: one attempt of the function (see :data:`ItemCall`)
    :param retry: the per-item retry policy (``None``: one attempt)
    :param timeout: seconds one attempt may take (``None``: no limit)
    :param limiter: a rate limiter; each attempt takes one token
    :param needs_key: whether ``call`` uses the key (a coordinator may skip making keys
        when it does not)
    """

    __slots__ = ("call", "limiter", "needs_key", "plain", "retry", "timeout")

    def __init__(
        self,
        call: ItemCall,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        limiter: RateLimiter | None = None,
        needs_key: bool = True,
    ) -> None:
        self.call = call
        self.retry = retry if retry is not None and retry.attempts > 1 else None
        self.timeout = timeout
        self.limiter = limiter
        self.needs_key = needs_key
        #: Whether an item is just one call (the engine then calls ``call`` directly).
        self.plain = self.retry is None and timeout is None and limiter is None

    async def attempt(self, key: str, item: Any, batch: BatchInfo | None = None) -> Any:
        """One attempt: take a rate token, call under the timeout.

        A plain function's worker thread is abandoned at the timeout (it finishes in the
        background; its result is discarded).

        :raises ItemTimeoutError: the attempt ran past the timeout
        """
        if self.limiter is not None:
            await self.limiter.acquire()
        if self.timeout is None:
            return await self.call(key, item, batch)
        return await call_with_timeout(
            self.timeout,
            functools.partial(self.call, key, item, batch),
            functools.partial(ItemTimeoutError, key, self.timeout),
        )

    async def _backoff(self, attempt: int) -> None:
        assert self.retry is not None
        delay = self.retry.delay(attempt)
        if delay > 0 and math.isfinite(delay):
            await anyio.sleep(delay)

    async def run(self, key: str, item: Any, batch: BatchInfo | None = None) -> Outcome:
        """Run one item (or a ``fail_batch`` batch, as one call) to its outcome.

        :return: ``(True, value, attempts)`` or ``(False, error, attempts)``
        """
        attempt = 1
        while True:
            try:
                value = await self.attempt(key, item, batch)
            except Exception as exc:
                if self.retry is not None and self.retry.should_retry(exc, attempt):
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                return False, exc, attempt
            return True, value, attempt

    async def run_batch(
        self,
        keys: Sequence[str],
        items: Sequence[Any],
        batch: BatchInfo,
        *,
        collect_errors: bool = False,
    ) -> list[Outcome]:
        """Run a batch and account for each of its items.

        The function must return one result per item, in order. With ``collect_errors``
        an exception *instance* among the results fails only its item, and failed items
        are retried (as a smaller batch) while the policy allows; otherwise an exception
        fails every item of the batch.

        :return: one outcome per item, in the batch's order
        """
        count = len(items)
        if not collect_errors:
            ok, value, attempts = await self.run(keys[0], list(items), batch)
            if ok and not _fits(value, count):
                ok, value = False, BatchResultError(batch.index, count, _shape(value))
            if ok:
                return [(True, result, attempts) for result in value]
            return [(False, value, attempts)] * count
        outcomes: list[Outcome | None] = [None] * count
        pending = list(range(count))
        attempt = 1
        while True:
            try:
                value = await self.attempt(keys[pending[0]], [items[i] for i in pending], batch)
            except Exception as exc:
                results: Sequence[Any] = [exc] * len(pending)
            else:
                if _fits(value, len(pending)):
                    results = value
                else:
                    error = BatchResultError(batch.index, len(pending), _shape(value))
                    for i in pending:
                        outcomes[i] = (False, error, attempt)
                    break
            again: list[int] = []
            for i, result in zip(pending, results, strict=True):
                if not isinstance(result, BaseException):
                    outcomes[i] = (True, result, attempt)
                elif self.retry is not None and self.retry.should_retry(result, attempt):
                    again.append(i)
                    outcomes[i] = (False, result, attempt)
                else:
                    outcomes[i] = (False, result, attempt)
            if not again:
                break
            await self._backoff(attempt)
            attempt += 1
            pending = again
        return [outcome for outcome in outcomes if outcome is not None]


def _fits(value: Any, count: int) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes | bytearray)
        and len(value) == count
    )
