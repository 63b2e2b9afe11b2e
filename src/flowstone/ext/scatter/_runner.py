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
from ._item_context import ItemContext, new_item_context

if TYPE_CHECKING:
    from flowstone import RateLimiter, Retry

__all__ = [
    "ItemCall",
    "ItemRunner",
    "Outcome",
    "PositionCall",
    "function_call",
    "invocation_call",
]

of = ItemContext.of

#: ``call(key, item_or_items, batch)``: one attempt of the user's function.
ItemCall = Callable[[str, Any, BatchInfo | None], Awaitable[Any]]
#: An :data:`ItemCall` that also takes an unbatched item's position (an ``int``) for its
#: key, when the key is the position: the key is then made only if the function reads it.
PositionCall = Callable[[str | int, Any, BatchInfo | None], Awaitable[Any]]
#: ``(ok, value_or_error, attempts)``
Outcome = tuple[bool, Any, int]


def _parameter_order(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The names of ``fn``'s parameters in order, if every one can be passed by position.

    ``None`` when one cannot (keyword-only, or ``*args``/``**kwargs``), when the signature
    cannot be read, or when ``fn`` wraps another function (its own parameters decide, and
    a wrapper may take keywords only).
    """
    if hasattr(fn, "__wrapped__"):
        return None
    try:
        parameters = inspect.signature(fn, follow_wrapped=False).parameters.values()
    except (TypeError, ValueError):
        return None
    names: list[str] = []
    for parameter in parameters:
        if parameter.kind is not parameter.POSITIONAL_OR_KEYWORD:
            return None
        names.append(parameter.name)
    return tuple(names)


def invocation_call(invocation: Invocation, *, own_task: bool = False) -> PositionCall:
    """The call that runs a scatter asset's function for one item (or batch).

    The function gets its inputs and context as in a plain asset, with the context made
    for the item (an :class:`ItemContext`) and ``item=`` the item, or the list
    of items of a batch. It behaves as :meth:`Invocation.call` (``fs.current_context()``
    is the item's context). For an async function how to pass the arguments is decided
    once per scatter: a function of only the context and the item, in either order, or of
    the item alone, gets them by position; any other gets keyword arguments built from a
    template made once per scatter.

    The call also takes an item's position in place of its key (``ctx.scatter_key`` is
    then the position as a string, made only if read), which saves making a key for an
    item whose key nothing else needs.

    :param own_task: the caller awaits each call in a worker task of its own that ends
        when the scatter does (as the engine's workers are); the current context is then
        set for the item and not restored afterwards, which saves a coroutine per item
        (the task's context copy is private to it)
    """
    base = invocation.context
    asset = invocation.asset

    if type(invocation) is not Invocation or not asset.is_async:
        call = invocation.call

        async def run_item(key: str | int, item: Any, batch: BatchInfo | None) -> Any:
            return await call(of(base, key, batch), item=item)

        return run_item

    start_item = _async_start(invocation)
    if own_task:
        return start_item

    current = _current

    async def run_async_item(key: str | int, item: Any, batch: BatchInfo | None) -> Any:
        token = current.set(current.get())  # restored below, whatever start_item sets
        try:
            return await start_item(key, item, batch)
        finally:
            current.reset(token)

    return run_async_item


def _async_start(invocation: Invocation) -> PositionCall:
    """``start(key, item, batch)``: set the item's context as current and return the async
    function's coroutine (see :func:`invocation_call`)."""
    base = invocation.context
    asset = invocation.asset
    fn = asset.fn
    ctx_param = asset.context_param
    template = dict(invocation.inputs)
    set_current = _current.set
    new = object.__new__

    # The item's context is made inline (as :func:`new_item_context` makes it): this runs
    # once per item, and a call less is a fair part of a trivial item's cost.
    order = None if template else _parameter_order(fn)
    if order is not None and ctx_param is not None and order == (ctx_param, "item"):

        def start_ctx_item(key: str | int, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
            if batch is None:
                ctx = new(ItemContext)
                ctx._parent = base
                ctx._key = key
                ctx._log = None
            else:
                ctx = of(base, key, batch)
            set_current(ctx)
            return fn(ctx, item)

        return start_ctx_item

    if order is not None and ctx_param is not None and order == ("item", ctx_param):

        def start_item_ctx(key: str | int, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
            ctx = new_item_context(base, key) if batch is None else of(base, key, batch)
            set_current(ctx)
            return fn(item, ctx)

        return start_item_ctx

    if order == ("item",):

        def start_item_only(key: str | int, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
            set_current(new_item_context(base, key) if batch is None else of(base, key, batch))
            return fn(item)

        return start_item_only

    def start_item(key: str | int, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
        ctx = of(base, key, batch)
        if template:
            kwargs = template.copy()
            kwargs["item"] = item
            if ctx_param is not None:
                kwargs[ctx_param] = ctx
        elif ctx_param is not None:
            kwargs = {ctx_param: ctx, "item": item}
        else:
            kwargs = {"item": item}
        set_current(ctx)
        return fn(**kwargs)

    return start_item


def function_call(
    fn: Callable[[Any], Any], *, is_async: bool, limiter: anyio.CapacityLimiter | None = None
) -> PositionCall:
    """The call for a plain function of the item (``scatter_map``).

    Plain functions run in worker threads, at most ``limiter``'s tokens at once; if one
    returns an awaitable (``lambda item: fetch(item)``), it is awaited on the loop. The
    key is not used (so the call takes a position as well).
    """
    if is_async:

        def start_async(key: str | int, item: Any, batch: BatchInfo | None) -> Awaitable[Any]:
            # The function's own coroutine: no coroutine of ours around it.
            coroutine: Awaitable[Any] = fn(item)
            return coroutine

        return start_async

    async def run_sync(key: str | int, item: Any, batch: BatchInfo | None) -> Any:
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
    :param by_position: ``call`` again, as a :data:`PositionCall`, when it also takes an
        item's position for its key (a coordinator whose keys are positions may then pass
        the position, and the key is made only if the function reads it)
    """

    __slots__ = ("by_position", "call", "limiter", "needs_key", "plain", "retry", "timeout")

    def __init__(
        self,
        call: ItemCall,
        *,
        retry: Retry | None = None,
        timeout: float | None = None,
        limiter: RateLimiter | None = None,
        needs_key: bool = True,
        by_position: PositionCall | None = None,
    ) -> None:
        self.call = call
        self.by_position = by_position
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
