"""Durable gates: :class:`PostgresGateStore`, the ``GateStore`` ``PostgresStore`` installs.

Gates live in the schema's ``gates`` table (migration 0004), one typed row each, with the
SHA-256 of the token and never the token. Closing a gate is one ``UPDATE … WHERE status
= 'waiting'``: of concurrent closes exactly one gets the row back, in any number of
processes. The same statement sends ``NOTIFY`` on the schema's gate channel, so a process
whose run holds the gate (``hold=``) wakes within moments of a signal sent anywhere
(:meth:`PostgresGateStore.listen`, one dedicated connection, no polling).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from flowstone.protocols import GateRecord, GateStatus

from ._sql import dump_json, load_json, partition_id, to_utc

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    import asyncpg

    from ._database import PostgresDatabase
    from ._sql import Connection

__all__ = ["PostgresGateStore", "gate_channel"]

_log = logging.getLogger("flowstone.postgres")

_COLUMNS = (
    "gate_id, run_id, asset, partition_key, kind, status, created_at, expires_at,"
    " resolved_at, resolved_by, reason, message, payload::text AS payload,"
    " metadata::text AS metadata, token_hash"
)


def gate_channel(schema: str) -> str:
    """The ``LISTEN``/``NOTIFY`` channel of a schema's gates (short, whatever the schema)."""
    return "flowstone_gates_" + hashlib.blake2b(schema.encode(), digest_size=8).hexdigest()


def gate_from_row(row: asyncpg.Record) -> GateRecord:
    """A gate read back from ``gates``."""
    return GateRecord(
        gate_id=row["gate_id"],
        run_id=row["run_id"],
        asset=row["asset"],
        partition=row["partition_key"],
        kind=row["kind"],
        status=GateStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        reason=row["reason"],
        message=row["message"],
        payload=load_json(row["payload"]),
        metadata=load_json(row["metadata"]) or {},
        token_hash=row["token_hash"],
    )


class PostgresGateStore:
    """Gates in PostgreSQL: what ``PostgresStore.install`` makes a runtime's gate store.

    Implements :class:`~flowstone.protocols.GateStore` and the gates plugin's
    ``ResolutionFeed``. Each write commits before it returns, so a gate is durable before
    its notifier is called. As an async context manager (the runtime enters it) it stops
    listening on exit.

    :param store: the store whose pool and schema it uses
    """

    def __init__(self, store: PostgresDatabase) -> None:
        self._store = store
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._callbacks: list[Callable[[str], None]] = []

    def __repr__(self) -> str:
        return f"PostgresGateStore(schema={self._store.schema!r})"

    @property
    def channel(self) -> str:
        """The ``NOTIFY`` channel closes are announced on."""
        return gate_channel(self._store.schema)

    def _table(self) -> str:
        return self._store.table("gates")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening (close the dedicated connection)."""
        listener, self._listener = self._listener, None
        self._callbacks.clear()
        if listener is not None and not listener.is_closed():
            try:
                await listener.close(timeout=5)
            except Exception:
                listener.terminate()

    # -- GateStore -------------------------------------------------------------------

    async def create(self, gate: GateRecord) -> GateRecord:
        """Insert the gate (committed on return), or return the stored one with its id."""
        sql = (
            f"INSERT INTO {self._table()} AS g (gate_id, run_id, asset, partition_id,"
            " partition_key, kind, status, created_at, expires_at, resolved_at, resolved_by,"
            " reason, message, payload, metadata, token_hash) VALUES ($1, $2, $3, $4, $5, $6,"
            " $7, $8, $9, $10, $11, $12, $13, $14::text::jsonb, $15::text::jsonb, $16)"
            " ON CONFLICT (gate_id) DO UPDATE SET gate_id = EXCLUDED.gate_id"
            f" RETURNING {_COLUMNS}"
        )
        args = (
            gate.gate_id,
            gate.run_id,
            gate.asset,
            partition_id(gate.partition),
            gate.partition,
            gate.kind,
            gate.status.value,
            to_utc(gate.created_at),
            to_utc(gate.expires_at),
            to_utc(gate.resolved_at),
            gate.resolved_by,
            gate.reason,
            gate.message,
            None if gate.payload is None else dump_json(gate.payload),
            dump_json(dict(gate.metadata)),
            gate.token_hash,
        )
        row = await self._store.call(
            f"create gate {gate.gate_id!r} of {gate.asset!r} in run {gate.run_id!r}",
            lambda conn: conn.fetchrow(sql, *args),
        )
        assert row is not None
        return gate_from_row(row)

    async def get(self, gate_id: str) -> GateRecord | None:
        """The gate with this id, or ``None``."""
        sql = f"SELECT {_COLUMNS} FROM {self._table()} WHERE gate_id = $1"
        row = await self._store.call(
            f"read gate {gate_id!r}", lambda conn: conn.fetchrow(sql, gate_id)
        )
        return None if row is None else gate_from_row(row)

    async def latest(self, run_id: str, asset: str, partition: str | None) -> GateRecord | None:
        """The gate created last for (run, asset, partition), or ``None``."""
        sql = (
            f"SELECT {_COLUMNS} FROM {self._table()} WHERE run_id = $1 AND asset = $2"
            " AND partition_id = $3 ORDER BY seq DESC LIMIT 1"
        )
        row = await self._store.call(
            f"read the gate of {asset!r} in run {run_id!r}",
            lambda conn: conn.fetchrow(sql, run_id, asset, partition_id(partition)),
        )
        return None if row is None else gate_from_row(row)

    async def close(
        self,
        gate_id: str,
        status: GateStatus,
        *,
        at: datetime,
        payload: Any = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> tuple[GateRecord, bool]:
        """Close a waiting gate in one statement (committed, and announced on the gate
        channel, on return); a closed gate is returned unchanged.

        Not retried after a lost connection: whether it committed is then unknown, and a
        second attempt would report a gate closed by the first as closed by a rival.

        :return: the stored gate, and whether this call closed it
        :raises KeyError: no gate has this id
        """
        sql = (
            f"WITH closed AS (UPDATE {self._table()} SET status = $2, resolved_at = $3,"
            " payload = $4::text::jsonb, resolved_by = $5, reason = $6"
            " WHERE gate_id = $1 AND status = 'waiting'"
            f" RETURNING {_COLUMNS})"
            " SELECT closed.*, pg_notify($7, closed.gate_id)::text AS notified FROM closed"
        )
        args = (
            gate_id,
            status.value,
            to_utc(at),
            None if payload is None else dump_json(payload),
            by,
            reason,
            self.channel,
        )
        row = await self._store.call(
            f"close gate {gate_id!r}",
            lambda conn: conn.fetchrow(sql, *args),
            idempotent=False,
        )
        if row is not None:
            return gate_from_row(row), True
        stored = await self.get(gate_id)
        if stored is None:
            raise KeyError(gate_id)
        return stored, False

    async def resolve(
        self,
        gate_id: str,
        status: GateStatus,
        *,
        payload: Any = None,
        by: str | None = None,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> GateRecord:
        """:meth:`close` at ``at`` (default: now), returning only the stored gate."""
        when = at if at is not None else datetime.now(UTC)
        gate, _ = await self.close(gate_id, status, at=when, payload=payload, by=by, reason=reason)
        return gate

    async def list_open(
        self, run_id: str | None = None, kind: str | None = None
    ) -> list[GateRecord]:
        """Waiting gates (of one run, of one kind, or all), oldest first."""
        sql = (
            f"SELECT {_COLUMNS} FROM {self._table()} WHERE status = 'waiting'"
            " AND ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR kind = $2)"
            " ORDER BY created_at, seq"
        )
        rows = await self._store.call("list open gates", lambda conn: conn.fetch(sql, run_id, kind))
        return [gate_from_row(row) for row in rows]

    # -- ResolutionFeed ----------------------------------------------------------------

    async def listen(self, on_closed: Callable[[str], None]) -> None:
        """Call ``on_closed(gate_id)`` for every gate any process closes from now on.

        One dedicated connection ``LISTEN``\\ s on the schema's gate channel (asyncpg's
        ``add_listener``: notifications arrive on the event loop, nothing polls). It is
        closed when the runtime closes; when it is lost, the next call connects again
        (a callback given again is kept once).
        """
        if on_closed not in self._callbacks:
            self._callbacks.append(on_closed)
        if self._listener is not None and not self._listener.is_closed():
            return

        def lost(conn: Connection) -> None:
            if self._listener is conn:
                self._listener = None  # the next listen() connects again
                _log.warning("lost the connection listening for closed gates")

        def deliver(_conn: Connection, _pid: int, _channel: str, payload: object) -> None:
            gate_id = str(payload)
            for callback in list(self._callbacks):
                try:
                    callback(gate_id)
                except Exception:  # pragma: no cover - callbacks only set events
                    _log.exception("a gate listener failed on %s", gate_id)

        self._listener = await self._store.connect_listener(self.channel, deliver, lost)
