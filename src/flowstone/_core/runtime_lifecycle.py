"""A runtime's lifetime: opening what it was given, closing it in reverse order.

:class:`RuntimeLifecycle` is the part of :class:`~flowstone.Runtime` that opens the store,
gate store, plugins, event sinks, item readers and resources (async context managers among
them are entered once, in the order given) and closes them, in reverse order, when the
runtime closes. A runtime opens itself on first use; once closed it cannot be reopened.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Self

import anyio

from .context import Resources
from .errors import RuntimeStateError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from .protocols import Coordinator, IOManager, MaterializationStore
    from .registry import Registry
    from .subscriptions import EventHub

__all__ = ["RuntimeLifecycle", "enter_resources", "is_async_cm"]


def is_async_cm(obj: object) -> bool:
    """Whether ``obj`` is an async context manager."""
    return hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__")


async def enter_resources(
    stack: contextlib.AsyncExitStack, resources: Mapping[str, Any]
) -> dict[str, Any]:
    """The resources' values: context managers (async or not) entered on ``stack``."""
    values: dict[str, Any] = {}
    for name, value in resources.items():
        if is_async_cm(value):
            values[name] = await stack.enter_async_context(value)
        elif hasattr(value, "__enter__") and hasattr(value, "__exit__"):
            values[name] = stack.enter_context(value)
        else:
            values[name] = value
    return values


class RuntimeLifecycle:
    """Opening and closing a runtime (a base of :class:`~flowstone.Runtime`, which builds
    the state)."""

    store: MaterializationStore
    resources: Resources
    io_managers: Registry[IOManager]
    coordinators: Registry[Coordinator]
    _resource_values: dict[str, Any]
    _given: list[object]
    _hub: EventHub | None
    _state: str
    _stack: contextlib.AsyncExitStack | None
    _entered: set[int]
    _open_lock: anyio.Lock | None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open stores, plugins, sinks and resources (done on first use if not called).

        :raises RuntimeStateError: the runtime was closed
        """
        if self._state == "open":
            return
        if self._state == "closed":
            raise RuntimeStateError("cannot reopen a Runtime once it has been closed")
        if self._open_lock is None:
            self._open_lock = anyio.Lock()
        async with self._open_lock:
            if self._state == "open":
                return
            if self._state == "closed":
                raise RuntimeStateError("cannot reopen a Runtime once it has been closed")
            stack = contextlib.AsyncExitStack()
            try:
                seen: set[int] = set()
                for obj in self._given:
                    if id(obj) not in seen and is_async_cm(obj):
                        seen.add(id(obj))
                        await stack.enter_async_context(obj)  # type: ignore[arg-type]  # checked above
                values = await enter_resources(stack, self._resource_values)
            except BaseException:
                await stack.aclose()
                raise
            self.resources = Resources(values)
            self._stack = stack
            self._entered = seen
            self._state = "open"

    async def aclose(self) -> None:
        """Close everything the runtime opened, in reverse order. Closing twice is harmless."""
        if self._state == "closed":
            return
        stack, self._stack = self._stack, None
        self._state = "closed"
        if self._hub is not None:
            self._hub.close()
        if stack is not None:
            await stack.aclose()
        for _, coordinator in self.coordinators.resolved():
            close = getattr(coordinator, "aclose", None)
            if callable(close) and not is_async_cm(coordinator):
                await close()
        # IO managers resolved by name (not given, so not entered above) that hold a
        # client, such as the ``s3`` manager built from the environment, close here.
        for _, manager in self.io_managers.resolved():
            close = getattr(manager, "aclose", None)
            if callable(close) and id(manager) not in self._entered:
                await close()

    async def migrate(self) -> None:
        """Bring the durable store's schema up to date (stores without a schema ignore it).

        Durable stores migrate on first use unless told not to; call this to do it ahead,
        for example in a deploy step.
        """
        migrate = getattr(self.store, "migrate", None)
        if callable(migrate):
            await migrate()

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._state == "closed"

    async def _ready(self) -> None:
        if self._state != "open":
            await self.open()
