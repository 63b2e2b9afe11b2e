"""``PostgresEvents``: lifecycle events of runs in other processes, through LISTEN/NOTIFY.

::

    store = PostgresStore(dsn)
    rt = fs.Runtime(store=store, plugins=[PostgresEvents(store)])
    async with rt, rt.subscribe(run_id=run_id) as events:
        async for event in events: ...   # this process's runs and the others'

Each runtime with the plugin publishes its runs' coarse events (run and asset status,
scatter start and end, and scatter progress at most ``progress_interval`` apart per
scatter; never one notification per item) on the schema's channel, batched into one
statement per turn of its publishing task, and listens on a connection of its own: events
from other processes go to this runtime's subscriptions (``runtime.subscribe``), never to
its event sinks, and its own come back to no one. Delivery is at most once: a notification
that cannot be sent (the server is down) is dropped and logged, and while the listening
connection is lost, events of other processes are missed (it reconnects).

It is a plugin, not a default of the store: it holds a connection of its own, and every
run with it sends notifications. Its publishing and listening tasks live in a task group
entered when the runtime opens and left when it closes: open and close the runtime with
``async with`` (in one task).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from flowstone import ComponentHealth, ConfigurationError, HealthStatus
from flowstone.ext.scatter import ScatterProgress

from ._event_codec import RELAYED, decode, encode

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from flowstone import Runtime
    from flowstone.events import Event

    from ._sql import Connection
    from ._store import PostgresStore

__all__ = ["PostgresEvents"]

_log = logging.getLogger("flowstone.postgres")


class PostgresEvents:
    """Relays lifecycle events between the processes that share a PostgreSQL schema.

    Pass it in ``fs.Runtime(plugins=[...])`` (see the module): it registers itself as an
    event sink (publishing) and, when the runtime opens, listens for the others' events.

    :param store: the store whose database and schema carry the events
    :param progress_interval: seconds between two relayed progress events of one scatter
    :param reconnect_delay: seconds before listening again after the connection was lost
    :param clock: the monotonic clock for ``progress_interval`` (a test passes its own)
    :raises ConfigurationError: an interval is negative
    """

    def __init__(
        self,
        store: PostgresStore,
        *,
        progress_interval: float = 0.5,
        reconnect_delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("progress_interval", progress_interval),
            ("reconnect_delay", reconnect_delay),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(
                    f"PostgresEvents({name}=...) is seconds, at least 0; got {value!r}"
                )
        self.store = store
        self.channel = f"flowstone_events_{store.schema}"[:63]
        self.progress_interval = float(progress_interval)
        self.reconnect_delay = float(reconnect_delay)
        self.origin = uuid.uuid4().hex
        self._clock = clock
        self._runtime: Runtime | None = None
        self._pending: list[str] = []
        self._wakeup = anyio.Event()
        self._last_progress: dict[tuple[str, str, str | None], float] = {}
        self._tasks: anyio.abc.TaskGroup | None = None
        self._listening = anyio.Event()
        self._connected = False
        #: Notifications sent, and events received from other processes (for monitoring).
        self.sent = 0
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

    def emit(self, event: Event) -> None:
        """Queue a coarse event for the publishing task (others are ignored)."""
        kind = type(event)
        if RELAYED.get(kind.__name__) is not kind:
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
        self._pending.append(encode(event, self.origin))
        self._wakeup.set()

    # -- lifetime --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = await anyio.create_task_group().__aenter__()
        self._tasks.start_soon(self._publish)
        self._tasks.start_soon(self._listen)
        await self._listening.wait()  # events of others reach subscribers from now on
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        with anyio.CancelScope(shield=True):
            await self._send()  # what the runtime's last runs emitted
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)

    async def _publish(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            await self._send()

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return

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
