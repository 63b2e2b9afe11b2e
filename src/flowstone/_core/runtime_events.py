"""A runtime's events: its sinks (by object or by name), run taggers, and live subscriptions.

:class:`RuntimeEvents` is the part of :class:`~flowstone.Runtime` that delivers lifecycle
events: to the registered event sinks (a failing sink is logged, never raised), and to the
subscriptions of :meth:`~RuntimeEvents.subscribe`, which ride on the sinks as one more.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import ConfigurationError, RuntimeStateError
from .protocols import EventSink, RunTagger
from .subscriptions import DEFAULT_BUFFER, EventHub, Subscription

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .events import Event
    from .registry import Registry

__all__ = ["RuntimeEvents"]

_log = logging.getLogger("flowstone")


class RuntimeEvents:
    """Event sinks and subscriptions of a runtime (a base of :class:`~flowstone.Runtime`,
    which builds the state)."""

    event_sink_registry: Registry[EventSink]
    _sinks: list[EventSink]
    _taggers: tuple[RunTagger, ...]
    _hub: EventHub | None
    _state: str
    _given: list[object]

    @property
    def has_sinks(self) -> bool:
        """Whether any event sink is registered (events are not built otherwise)."""
        return bool(self._sinks)

    @property
    def has_item_sinks(self) -> bool:
        """Whether a registered sink takes per-item events (a sink says it does not with
        ``item_events = False``, see :class:`~flowstone.protocols.EventSink`); plugins
        build events for every item only then."""
        return any(getattr(sink, "item_events", True) for sink in self._sinks)

    @property
    def event_sinks(self) -> tuple[EventSink, ...]:
        """The registered event sinks."""
        return tuple(self._sinks)

    @property
    def run_taggers(self) -> tuple[RunTagger, ...]:
        """The event sinks that store tags with each run (see :class:`~flowstone.protocols.RunTagger`)."""
        return self._taggers

    def add_event_sink(self, sink: EventSink | str) -> None:
        """Register one more event sink (for example from a plugin's ``install``), or the
        one registered under a name (see ``event_sinks=``). A sink that is an async context
        manager is entered when the runtime opens, if it is added before that.

        :raises PluginNotFoundError: no event sink has that name
        """
        resolved = self._named_sink(sink)
        self._sinks.append(resolved)
        if isinstance(resolved, RunTagger):
            self._taggers = (*self._taggers, resolved)
        if self._state == "new":
            self._given.append(resolved)

    def subscribe(
        self,
        run_id: str | None = None,
        asset: str | Iterable[str] | None = None,
        kinds: Iterable[type[Event] | str] | type[Event] | str | None = None,
        *,
        buffer: int = DEFAULT_BUFFER,
    ) -> Subscription:
        """Live lifecycle events: ``async with rt.subscribe() as events: async for e in events``.

        Filtered by run, asset (names) and kinds (event classes, matching subclasses, or
        class names). The buffer is bounded: a slow subscriber never slows a run; it loses
        the oldest unread events and then reads a :class:`~flowstone.events.Dropped` event
        saying how many. Runs that start while a subscription (or any sink) exists emit
        events; iteration ends when the subscription or the runtime closes. See
        :mod:`flowstone._core.subscriptions`.

        :raises ConfigurationError: a filter or ``buffer`` is not valid
        :raises RuntimeStateError: the runtime is closed
        """
        if self._state == "closed":
            raise RuntimeStateError("cannot subscribe to a closed Runtime")
        if self._hub is None:
            self._hub = EventHub(self._sinks.append, self._sinks.remove)
        return self._hub.subscribe(run_id, asset, kinds, buffer=buffer)

    def deliver_to_subscribers(self, event: Event) -> None:
        """Hand ``event``, which happened elsewhere (a run in another process), to this
        runtime's subscriptions only, not to its event sinks (a plugin that relays events
        between processes calls it)."""
        if self._hub is not None:
            self._hub.emit(event)

    def _named_sink(self, sink: EventSink | str) -> EventSink:
        if not isinstance(sink, str):
            return sink
        resolved = self.event_sink_registry.get(sink)
        if not isinstance(resolved, EventSink):
            raise ConfigurationError(
                f"event sink {sink!r} resolved to {resolved!r}, which has no emit(event)"
            )
        return resolved

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every sink; a failing sink is logged, never raised."""
        for sink in self._sinks:
            try:
                sink.emit(event)
            except Exception:
                _log.exception("event sink %r failed on %s", sink, type(event).__name__)
