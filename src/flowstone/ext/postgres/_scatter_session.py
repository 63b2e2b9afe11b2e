"""A process's membership in durable scatters: worker number, advisory lock, lease, wake-ups.

A :class:`WorkerSession` registers a row in ``scatter_workers`` and, on a connection of its
own, holds a session-level advisory lock keyed by that row's number for as long as the
process lives. When the process dies the server drops the lock at once, and other workers
put the dead one's running items back to pending (``pg_locks`` shows the lock is gone). A
lease, renewed every third of its length, covers what the lock cannot see: a process that
is alive but stuck. The same connection LISTENs for barrier notifications, so idle
claimers wake when items arrive or a barrier completes, instead of polling fast.

If the connection drops (a restarted server), the session reconnects with backoff, takes
its lock again and resumes listening; meanwhile others may recover its items (they are
then run twice, and the first stored result wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import describe, is_transient, map_errors, retrying

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from ._barrier_statements import BarrierStatements

__all__ = ["DEFAULT_LEASE", "WorkerSession", "channel_for", "namespace_for"]

_log = logging.getLogger("flowstone.postgres")


#: Seconds a worker's claims outlive its last heartbeat when its death is not visible.
DEFAULT_LEASE = 30.0


def namespace_for(schema: str) -> int:
    """The advisory lock namespace of a schema's scatter workers (a non-negative int32)."""
    digest = hashlib.blake2b(f"flowstone.scatter:{schema}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def channel_for(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a schema's scatter barriers."""
    return "flowstone_scatter_" + hashlib.blake2b(schema.encode(), digest_size=6).hexdigest()


class WorkerSession:
    """One process's identity among scatter workers (see the module documentation).

    Use it as ``await session.start()``, then run :meth:`run` in a task group for the
    heartbeat, and ``await session.close()`` at the end.

    :param ops: the scatter operations (store, statements)
    :param lease: seconds the lease lasts without a heartbeat
    """

    def __init__(self, ops: BarrierStatements, *, lease: float = DEFAULT_LEASE) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        self.ops = ops
        self.lease = lease
        schema = ops.store.schema
        self.namespace = namespace_for(schema)
        self.channel = channel_for(schema)
        self.worker_no = 0
        self._conn: Any = None
        self._pooled = False
        self._events: dict[str, anyio.Event] = {}
        self._lost: anyio.Event | None = None
        self._closed = False
        self._loop: Any = None

    def __repr__(self) -> str:
        return f"WorkerSession(worker_no={self.worker_no}, lease={self.lease:g})"

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Register the worker, take its lock and start listening."""
        q = self.ops.q
        store = self.ops.store

        async def register(conn: Any) -> int:
            await conn.execute(q.forget_old_workers)
            return int(await conn.fetchval(q.register_worker, _host(), os.getpid(), self.lease))

        self.worker_no = await self.ops.call("register a scatter worker", register)
        what = f"take the lock of scatter worker {self.worker_no}"
        with map_errors(what):
            await retrying(self._connect, what=what, policy=store.retry_policy)
        self._loop = asyncio.get_running_loop()

    async def resume(self) -> bool:
        """Take up a session kept idle after an earlier scatter, for the next one: renew its
        lease and hand back any item it still holds (its executor could not).

        :return: whether it can be used (else close it and start a new one)
        """
        conn = self._conn
        if self._closed or not self.loop_is_current() or conn is None or conn.is_closed():
            return False
        q = self.ops.q
        try:
            with anyio.fail_after(5):
                async with conn.transaction():
                    renewed = await conn.execute(q.heartbeat, self.worker_no, self.lease)
                    await conn.execute(q.release_held, self.worker_no)
        except Exception as exc:
            _log.debug("could not take up scatter worker %d: %s", self.worker_no, describe(exc))
            return False
        return bool(renewed == "UPDATE 1")

    @property
    def pooled(self) -> bool:
        """Whether its connection is one of the store's pool (a store made from a pool)."""
        return self._pooled

    def loop_is_current(self) -> bool:
        """Whether the session belongs to the running event loop."""
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

    def _discard(self) -> None:
        """Drop a session whose event loop has ended (its connection cannot be closed)."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None and not self._pooled:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _connect(self) -> None:
        """Open the session's own connection, lock, listen (retried by the caller)."""
        await self._disconnect()
        store = self.ops.store
        conn: Any
        if store.dsn is not None:
            conn = await store.connect_dedicated()
            self._pooled = False
        else:
            conn = await store.pool.acquire()
            self._pooled = True
        try:
            # The previous session of this worker may still hold the lock for a moment.
            with anyio.fail_after(max(5.0, self.lease)):
                while True:
                    if await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1, $2)", self.namespace, self.worker_no
                    ):
                        break
                    await anyio.sleep(0.05)
            await conn.add_listener(self.channel, self._on_notify)
            conn.add_termination_listener(self._on_termination)
            await conn.execute(self.ops.q.heartbeat, self.worker_no, self.lease)
        except BaseException:
            await self._drop(conn)
            raise
        self._conn = conn

    async def _drop(self, conn: Any) -> None:
        with anyio.CancelScope(shield=True):
            if self._pooled:
                with contextlib.suppress(Exception):
                    conn.terminate()
                with contextlib.suppress(Exception):
                    await self.ops.store.pool.release(conn)
            else:
                conn.terminate()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._drop(conn)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Renew the lease until cancelled; reconnect (and lock again) after connection loss."""
        task_status.started()
        delays = self.ops.store.retry_policy.delays()
        interval = self.lease / 3
        while True:
            lost = self._lost = anyio.Event()
            if self._conn is not None and not self._conn.is_closed():
                with anyio.move_on_after(interval):
                    await lost.wait()  # a dropped connection is taken up again at once
            else:
                await anyio.sleep(interval)
            try:
                if self._conn is None or self._conn.is_closed():
                    await self._connect()
                else:
                    await self._conn.execute(self.ops.q.heartbeat, self.worker_no, self.lease)
                delays = self.ops.store.retry_policy.delays()
                interval = self.lease / 3
            except Exception as exc:
                if not is_transient(exc):
                    raise
                _log.warning(
                    "scatter worker %d lost its connection (%s); reconnecting",
                    self.worker_no,
                    describe(exc),
                )
                await self._disconnect()
                interval = min(next(delays), self.lease / 3)

    async def close(self) -> None:
        """Release the lock, stop listening and forget the worker row (best effort).

        A session of an event loop that has ended is only dropped (its connection cannot be closed).
        """
        if self._closed:
            return
        if self._loop is not None and not self.loop_is_current():
            self._discard()
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            conn = self._conn
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception), anyio.move_on_after(5):
                    await conn.remove_listener(self.channel, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock_all()")
                    await conn.execute(self.ops.q.forget_worker, self.worker_no)
                if self._pooled:
                    with contextlib.suppress(Exception):
                        await self.ops.store.pool.release(conn)
                    self._conn = None
                else:
                    with contextlib.suppress(Exception), anyio.move_on_after(5):
                        await conn.close()
                    self._conn = None
            await self._disconnect()

    async def others_alive(self) -> bool:
        """Whether a live worker other than this one takes part in the schema's scatters."""
        return await self.ops.others_alive(self.namespace, self.worker_no)

    # -- wake-ups ----------------------------------------------------------------------

    def _on_termination(self, connection: Any) -> None:
        if self._lost is not None:
            self._lost.set()

    def _on_notify(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        self.poke(str(payload))

    def poke(self, topic: str) -> None:
        """Wake whoever waits on ``topic`` (a barrier id), and whoever waits on ``"*"``
        (any notification)."""
        for name in (topic, "*"):
            event = self._events.pop(name, None)
            if event is not None:
                event.set()

    async def wait(self, topic: str, seconds: float) -> bool:
        """Wait for a notification on ``topic`` for at most ``seconds``.

        :return: whether a notification came
        """
        event = self._events.get(topic)
        if event is None:
            event = self._events[topic] = anyio.Event()
        with anyio.move_on_after(seconds):
            await event.wait()
            return True
        return False


def _host() -> str:
    try:
        return socket.gethostname()
    except OSError:  # pragma: no cover - hostname lookups do not fail in practice
        return ""
