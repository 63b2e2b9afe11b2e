"""Live events: ``runtime.subscribe(...)``, an async iterator of lifecycle events.

Each subscription has a bounded buffer. Delivering an event never waits: when the buffer is
full the oldest unread event is dropped, and the subscriber reads a
:class:`~flowstone.events.Dropped` event (how many) before the events that follow. A run is
never slowed by a subscriber, and a subscription costs one filter check per event (those
filtered by run are looked up by run id, so many of them are cheap).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Self

import anyio

from .errors import ConfigurationError
from .events import AssetEvent, Dropped, Event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

__all__ = ["DEFAULT_BUFFER", "EventHub", "Subscription"]

#: Events a subscription keeps unread before it drops the oldest.
DEFAULT_BUFFER = 1000


def _names(value: str | Iterable[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    names = frozenset([value] if isinstance(value, str) else value)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ConfigurationError(f"subscribe({what}=...) takes a name or names, got {value!r}")
    return names


def _kinds(kinds: Iterable[type[Event] | str] | type[Event] | str | None) -> frozenset[object]:
    if kinds is None:
        return frozenset()
    given = [kinds] if isinstance(kinds, str | type) else list(kinds)
    for kind in given:
        if not (isinstance(kind, str) and kind) and not (
            isinstance(kind, type) and issubclass(kind, Event)
        ):
            raise ConfigurationError(
                f"subscribe(kinds=...) takes event classes or their names, got {kind!r}"
            )
    if not given:
        raise ConfigurationError("subscribe(kinds=...) is empty: pass None for every kind")
    return frozenset(given)


class Subscription:
    """One subscriber's filtered, bounded stream of events (see the module).

    Use it as ``async with runtime.subscribe(...) as events: async for event in events:``.
    Iteration ends when the subscription is closed (leaving the ``async with``, or
    :meth:`close`) or the runtime closes.

    :ivar run_id: only events of this run (``None``: every run)
    :ivar assets: only events of these assets (``None``: every event; run events have no
        asset, so a subscription by asset does not get them)
    :ivar buffer: unread events kept before the oldest are dropped
    """

    def __init__(
        self,
        hub: EventHub,
        *,
        run_id: str | None,
        assets: frozenset[str] | None,
        kinds: frozenset[object],
        buffer: int,
    ) -> None:
        self.run_id = run_id
        self.assets = assets
        self.buffer = buffer
        self._kinds = kinds
        self._wanted: dict[type, bool] = {}
        self._hub = hub
        self._queue: deque[Event] = deque()
        self._dropped = 0
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def wants(self, event: Event) -> bool:
        """Whether ``event`` passes the asset and kind filters (the run is the hub's)."""
        if self.assets is not None and (
            not isinstance(event, AssetEvent) or event.asset not in self.assets
        ):
            return False
        if not self._kinds:
            return True
        kind = type(event)
        wanted = self._wanted.get(kind)
        if wanted is None:
            wanted = self._wanted[kind] = any(
                base in self._kinds or base.__name__ in self._kinds for base in kind.__mro__
            )
        return wanted

    def put(self, event: Event) -> None:
        """Buffer ``event`` (never waits; drops the oldest unread one when full)."""
        if self._closed:
            return
        if len(self._queue) >= self.buffer:
            self._queue.popleft()
            self._dropped += 1
        self._queue.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def close(self) -> None:
        """Stop the subscription: iteration ends after the events already buffered."""
        if self._closed:
            return
        self._closed = True
        self._hub.remove(self)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    @property
    def closed(self) -> bool:
        """Whether the subscription was closed."""
        return self._closed

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return Dropped(run_id=self.run_id or "", count=count)
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            wakeup = self._wakeup = anyio.Event()
            await wakeup.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)} buffered"
        return f"<Subscription run_id={self.run_id!r} assets={self.assets!r} {state}>"


class EventHub:
    """The runtime's subscriptions: an event sink while any subscription is open.

    :param attach: called with the hub when the first subscription opens (registers it
        as a sink, so runs build events)
    :param detach: called when the last one closes
    """

    def __init__(self, attach: Callable[[EventHub], None], detach: Callable[[EventHub], None]):
        self._attach = attach
        self._detach = detach
        self._by_run: dict[str, list[Subscription]] = {}
        self._all: list[Subscription] = []

    def subscribe(
        self,
        run_id: str | None = None,
        asset: str | Iterable[str] | None = None,
        kinds: Iterable[type[Event] | str] | type[Event] | str | None = None,
        *,
        buffer: int = DEFAULT_BUFFER,
    ) -> Subscription:
        """A new subscription (see :meth:`flowstone.Runtime.subscribe`)."""
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ConfigurationError(f"subscribe(run_id=...) takes a run id, got {run_id!r}")
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise ConfigurationError(f"subscribe(buffer=...) must be at least 1, got {buffer!r}")
        subscription = Subscription(
            self, run_id=run_id, assets=_names(asset, "asset"), kinds=_kinds(kinds), buffer=buffer
        )
        if run_id is None:
            self._all.append(subscription)
        else:
            self._by_run.setdefault(run_id, []).append(subscription)
        if len(self) == 1:
            self._attach(self)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a closed subscription."""
        if subscription.run_id is None:
            group = self._all
        else:
            group = self._by_run[subscription.run_id]
        group.remove(subscription)
        if subscription.run_id is not None and not group:
            del self._by_run[subscription.run_id]
        if not len(self):
            self._detach(self)

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every subscription that wants it."""
        for subscription in self._all:
            if subscription.wants(event):
                subscription.put(event)
        for subscription in self._by_run.get(event.run_id, ()):
            if subscription.wants(event):
                subscription.put(event)

    def close(self) -> None:
        """Close every subscription (the runtime is closing)."""
        for subscription in [*self._all, *(s for g in self._by_run.values() for s in g)]:
            subscription.close()

    def __len__(self) -> int:
        return len(self._all) + sum(map(len, self._by_run.values()))
