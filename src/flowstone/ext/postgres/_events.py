"""``PostgresEvents``: lifecycle events of runs in other processes, through LISTEN/NOTIFY.

::

    store = PostgresStore(dsn)
    rt = fs.Runtime(store=store)                 # the store relays events by default
    async with rt, rt.subscribe(run_id=run_id) as events:
        async for event in events: ...   # this process's runs and the others'

Every runtime on a :class:`PostgresStore` (unless ``PostgresStore(events=False)``) publishes
its runs' coarse events (run and asset status, scatter start and end, and scatter progress
at most ``progress_interval`` apart per scatter; never one notification per item) on the
schema's channel, batched into one statement per turn of its publishing task, and listens
on a connection of its own: events from other processes go to this runtime's subscriptions
(``runtime.subscribe``), never to its event sinks, and its own come back to no one.
Delivery is at most once: a notification that cannot be sent (the server is down) is
dropped and logged, and while the listening connection is lost, events of other processes
are missed (it reconnects).

The store installs a relay with the defaults. Passing ``PostgresEvents(store, ...)`` in
``fs.Runtime(plugins=[...])`` replaces it, to choose the intervals or ``listen=False``
(publish only, no connection held). A store made from a user's pool has no DSN to open a
listening connection with: its default relay only publishes. The publishing and listening
tasks live in a task group entered when the runtime opens and left when it closes: open and
close the runtime with ``async with`` (in one task).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Self

import anyio

from flowstone import ComponentHealth, ConfigurationError, HealthStatus
from flowstone.ext.scatter import ScatterProgress

from ._event_codec import RELAYED, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from flowstone import Runtime
    from flowstone.events import Event

    from ._database import PostgresDatabase
    from ._sql import Connection

__all__ = ["PostgresEvents"]

_log = logging.getLogger("flowstone.postgres")

#: The relay serving each runtime: a plugin installed after the store's default replaces it.
_RELAYS: weakref.WeakKeyDictionary[Runtime, PostgresEvents] = weakref.WeakKeyDictionary()


class PostgresEvents:
    """Relays lifecycle events between the processes that share a PostgreSQL schema.

    Pass it in ``fs.Runtime(plugins=[...])`` (see the module): it registers itself as an
    event sink (publishing) and, when the runtime opens, listens for the others' events.

    :param store: the store whose database and schema carry the events
    :param progress_interval: seconds between two relayed progress events of one scatter
    :param reconnect_delay: seconds before listening again after the connection was lost
    :param batch_interval: seconds the publishing task gathers events before it sends them
        in one statement (so a run's database connection is not taken per event)
    :param clock: the monotonic clock for ``progress_interval`` (a test passes its own)
    :param listen: deliver other processes' events to this runtime's subscriptions (holds a
        connection of its own; needs the store's DSN); ``False`` only publishes
    :raises ConfigurationError: an interval is negative
    """

    #: It relays coarse events only: per-item scatter events are not built for it.
    item_events = False

    def __init__(
        self,
        store: PostgresDatabase,
        *,
        progress_interval: float = 0.5,
        reconnect_delay: float = 1.0,
        batch_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        listen: bool = True,
    ) -> None:
        for name, value in (
            ("progress_interval", progress_interval),
            ("reconnect_delay", reconnect_delay),
            ("batch_interval", batch_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(
                    f"PostgresEvents({name}=...) is seconds, at least 0; got {value!r}"
                )
        self.store = store
        self.channel = f"flowstone_events_{store.schema}"[:63]
        self.progress_interval = float(progress_interval)
        self.reconnect_delay = float(reconnect_delay)
        self.batch_interval = float(batch_interval)
        self.origin = uuid.uuid4().hex
        self._clock = clock
        self.listen = listen
        #: False once another relay took over this one's runtime (see :meth:`install`).
        self.active = True
        self._runtime: Runtime | None = None
        self._pending: list[Event] = []
        self._wakeup = anyio.Event()
        self._last_progress: dict[tuple[str, str, str | None], float] = {}
        self._owner: asyncio.Task[None] | None = None
        self._listening = anyio.Event()
        self._connected = False
        #: Notifications sent, and events received from other processes (for monitoring).
        self.sent = 0
        # One send at a time: closing waits for the publishing task's send under way
        # (cancelling it would drop its events), then sends the rest.
        self._sending = anyio.Lock()
        self.received = 0

    def __repr__(self) -> str:
        return f"PostgresEvents(channel={self.channel!r})"

    # -- Plugin and EventSink --------------------------------------------------------------

    def install(self, runtime: Runtime) -> None:
        """Publish ``runtime``'s events and deliver the others' to its subscriptions."""
        if self._runtime is not None and self._runtime is not runtime:
            raise ConfigurationError("a PostgresEvents plugin serves one runtime")
        self._runtime = runtime
        runtime.add_event_sink(self)
        previous = _RELAYS.get(runtime)
        if previous is not None and previous is not self:
            previous.active = False  # the store's default relay: this one replaces it
        _RELAYS[runtime] = self

    def emit(self, event: Event) -> None:
        """Queue a coarse event for the publishing task (others are ignored)."""
        kind = type(event)
        if not self.active or RELAYED.get(kind.__name__) is not kind:
            return
        if isinstance(event, ScatterProgress):
            key = (event.run_id, event.asset, event.partition)
            now = self._clock()
            last = self._last_progress.get(key)
            if last is not None and now - last < self.progress_interval:
                return
            self._last_progress[key] = now
        elif kind.__name__ == "ScatterFinished":
            self._last_progress.pop((event.run_id, event.asset, event.partition), None)  # type: ignore[attr-defined]
        self._pending.append(event)
        self._wakeup.set()

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if not self.active:
            return self
        # The tasks live in a task group of a task of their own, so that the runtime may be
        # opened and closed by different tasks (a test fixture, a web app's lifespan).
        self._owner = asyncio.get_running_loop().create_task(
            self._run_tasks(), name=f"flowstone: events on {self.channel}"
        )
        if self.listen:
            await self._listening.wait()  # events of others reach subscribers from now on
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        owner, self._owner = self._owner, None
        if owner is None:
            return
        with anyio.CancelScope(shield=True):
            await self._send()  # what the runtime's last runs emitted
            owner.cancel()
            await asyncio.wait([owner])

    async def _run_tasks(self) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._publish)
                if self.listen:
                    tasks.start_soon(self._listen)
        finally:
            self._listening.set()  # never leave the runtime's opening waiting

    async def _publish(self) -> None:
        while True:
            await self._wakeup.wait()
            await anyio.sleep(self.batch_interval)  # gather what follows into one statement
            self._wakeup = anyio.Event()
            await self._send()

    @property
    def sending(self) -> bool:
        """Whether a batch of notifications is being sent now."""
        return self._sending.locked()

    async def _send(self) -> None:
        async with self._sending:
            await self._send_pending()

    async def _send_pending(self) -> None:
        events, self._pending = self._pending, []
        if not events:
            return
        batch = [encode(event, self.origin) for event in events]

        async def notify(conn: Connection) -> None:
            await conn.execute(
                "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                self.channel,
                batch,
            )

        try:
            await self.store.call("send event notifications", notify, idempotent=False)
        except Exception as exc:
            _log.warning("dropped %d event notification(s): %s", len(batch), exc)
            return
        self.sent += len(batch)

    async def _listen(self) -> None:
        while True:
            lost = anyio.Event()
            conn: Any = None
            try:
                conn = await self.store.connect_listener(
                    self.channel, self._received, lambda _conn, lost=lost: lost.set()
                )
                self._connected = True
                self._listening.set()
                await lost.wait()
                _log.warning("lost the connection listening on %s; listening again", self.channel)
            except Exception as exc:
                _log.warning("cannot listen on %s: %s", self.channel, exc)
                self._listening.set()  # the runtime opens; others' events come once it works
            finally:
                self._connected = False
                if conn is not None and not conn.is_closed():
                    with anyio.CancelScope(shield=True):
                        await conn.close()
            await anyio.sleep(self.reconnect_delay)

    async def check_health(self) -> list[ComponentHealth]:
        """``postgres:events``: whether the listening connection is open (for
        ``runtime.health()``); ``degraded`` while it is being reopened."""
        if not self.active:
            return []
        if not self.listen:
            detail = f"publishing on {self.channel} (not listening); {self.sent} sent"
            return [ComponentHealth("postgres:events", HealthStatus.UP, 0.0, detail)]
        if self._connected:
            detail = f"listening on {self.channel}; {self.sent} sent, {self.received} received"
            return [ComponentHealth("postgres:events", HealthStatus.UP, 0.0, detail)]
        detail = f"not listening on {self.channel}: events of other processes are missed"
        return [ComponentHealth("postgres:events", HealthStatus.DEGRADED, 0.0, detail)]

    def _received(self, conn: object, pid: int, channel: str, payload: str) -> None:
        decoded = decode(payload)
        if decoded is None:
            return
        origin, event = decoded
        if origin == self.origin or self._runtime is None:
            return
        self.received += 1
        self._runtime.deliver_to_subscribers(event)
