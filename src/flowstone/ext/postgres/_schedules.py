"""Durable schedules: :class:`PostgresScheduleStore`, the schedule store of ``PostgresStore``.

Ticks live in the schema's ``schedule_ticks`` table (migration 0005), one row per
(name, key). A claim is one ``INSERT … ON CONFLICT DO NOTHING``: of any number of
processes running the same schedules, exactly one gets the row, so each tick fires once
in total; the row keeps what became of it (fired, skipped and why, run id, status), so a
scheduler restarted anywhere knows where catch-up starts. Renewing, finishing and taking
over a claim are conditional ``UPDATE`` statements (the owner, and the lease, are in the
``WHERE``), so a claim taken over is no longer its old holder's to finish. A sensor's
cursor and its new run requests commit in one transaction that first locks the sensor's
row and checks the cursor it read. Times are the schedulers' clock, passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._sql import dump_json, load_json, to_utc

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime

    import asyncpg

    from flowstone.ext.schedule import TickRecord, TickStatus

    from ._database import PostgresDatabase
    from ._sql import Connection

__all__ = ["PostgresScheduleStore"]

_COLUMNS = (
    "name, key, tick, run_id, status, selection, partition_key, tags::text AS tags, reason,"
    " owner, lease_until, finished_at"
)

_T_COLUMNS = (
    "t.name, t.key, t.tick, t.run_id, t.status, t.selection, t.partition_key,"
    " t.tags::text AS tags, t.reason, t.owner, t.lease_until, t.finished_at"
)


def _tick_from_row(row: asyncpg.Record) -> TickRecord:
    from flowstone.ext.schedule import TickRecord, TickStatus

    return TickRecord(
        name=row["name"],
        key=row["key"],
        tick=row["tick"],
        run_id=row["run_id"],
        status=TickStatus(row["status"]),
        select=tuple(row["selection"]),
        partition=row["partition_key"],
        tags=load_json(row["tags"]) or {},
        reason=row["reason"],
        owner=row["owner"],
        lease_until=row["lease_until"],
        finished_at=row["finished_at"],
    )


def _args(record: TickRecord) -> tuple[Any, ...]:
    return (
        record.name,
        record.key,
        to_utc(record.tick),
        record.run_id,
        record.status.value,
        list(record.select),
        record.partition,
        dump_json(dict(record.tags)),
        record.reason,
        record.owner,
        to_utc(record.lease_until),
        to_utc(record.finished_at),
    )


class PostgresScheduleStore:
    """Tick claims, history and sensor cursors in PostgreSQL (a ``ScheduleStore``).

    :param store: the store whose pool and schema it uses
    """

    def __init__(self, store: PostgresDatabase) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"PostgresScheduleStore(schema={self._store.schema!r})"

    def _ticks(self) -> str:
        return self._store.table("schedule_ticks")

    def _names(self) -> str:
        return self._store.table("schedule_names")

    def _insert(self) -> str:
        return (
            f"INSERT INTO {self._ticks()} (name, key, tick, run_id, status, selection,"
            " partition_key, tags, reason, owner, lease_until, finished_at) VALUES ($1, $2,"
            " $3, $4, $5, $6, $7, $8::text::jsonb, $9, $10, $11, $12)"
            " ON CONFLICT (name, key) DO NOTHING RETURNING key"
        )

    async def register(self, name: str, now: datetime) -> datetime:
        """Record ``name`` once; when it was first registered."""
        sql = (
            f"WITH added AS (INSERT INTO {self._names()} (name, registered_at) VALUES ($1, $2)"
            " ON CONFLICT (name) DO NOTHING RETURNING registered_at)"
            f" SELECT registered_at FROM added UNION ALL"
            f" SELECT registered_at FROM {self._names()} WHERE name = $1 LIMIT 1"
        )
        found: datetime | None = await self._store.call(
            f"register schedule {name!r}", lambda conn: conn.fetchval(sql, name, to_utc(now))
        )
        assert found is not None
        return found

    async def claim(self, record: TickRecord) -> bool:
        """Insert the claimed tick unless it has a row (one statement: one winner)."""
        sql, args = self._insert(), _args(record)
        key = await self._store.call(
            f"claim tick {record.key} of {record.name!r}",
            lambda conn: conn.fetchval(sql, *args),
            idempotent=False,
        )
        return key is not None

    async def skip(self, records: Sequence[TickRecord]) -> int:
        """Insert the skipped ticks that have no row; how many were new."""
        if not records:
            return 0
        sql = self._insert()
        rows = [_args(record) for record in records]

        async def insert(conn: Connection) -> int:
            added = 0
            async with conn.transaction():
                for args in rows:
                    if await conn.fetchval(sql, *args) is not None:
                        added += 1
            return added

        return await self._store.call(f"record skipped ticks of {records[0].name!r}", insert)

    async def renew(self, name: str, key: str, owner: str, lease_until: datetime) -> bool:
        """Extend ``owner``'s lease while the claim is its."""
        sql = (
            f"UPDATE {self._ticks()} SET lease_until = $4 WHERE name = $1 AND key = $2"
            " AND owner = $3 AND status = 'claimed'"
        )
        done = await self._store.call(
            f"renew the claim of tick {key} of {name!r}",
            lambda conn: conn.execute(sql, name, key, owner, to_utc(lease_until)),
        )
        return str(done).endswith(" 1")

    async def finish(
        self,
        name: str,
        key: str,
        owner: str,
        status: TickStatus,
        finished_at: datetime,
        reason: str | None = None,
    ) -> bool:
        """Record the outcome of ``owner``'s claim."""
        sql = (
            f"UPDATE {self._ticks()} SET status = $4, finished_at = $5, reason = $6,"
            " lease_until = NULL WHERE name = $1 AND key = $2 AND owner = $3"
            " AND status = 'claimed'"
        )
        done = await self._store.call(
            f"record the outcome of tick {key} of {name!r}",
            lambda conn: conn.execute(
                sql, name, key, owner, status.value, to_utc(finished_at), reason
            ),
        )
        return str(done).endswith(" 1")

    async def reclaim(
        self, names: Collection[str], owner: str, now: datetime, lease_until: datetime
    ) -> list[TickRecord]:
        """Take over the claims of ``names`` whose lease ended (``SKIP LOCKED``: two
        schedulers never take the same one)."""
        sql = (
            f"UPDATE {self._ticks()} t SET owner = $2, lease_until = $4 FROM ("
            f" SELECT name, key FROM {self._ticks()} WHERE name = ANY($1::text[])"
            " AND status = 'claimed' AND lease_until < $3 FOR UPDATE SKIP LOCKED) due"
            " WHERE t.name = due.name AND t.key = due.key AND t.status = 'claimed'"
            f" AND t.lease_until < $3 RETURNING {_T_COLUMNS}"
        )
        rows = await self._store.call(
            "take over expired tick claims",
            lambda conn: conn.fetch(sql, list(names), owner, to_utc(now), to_utc(lease_until)),
            idempotent=False,
        )
        return sorted((_tick_from_row(row) for row in rows), key=lambda r: r.tick)

    async def active(self, name: str, now: datetime) -> list[TickRecord]:
        """The claims of ``name`` whose lease holds at ``now``."""
        sql = (
            f"SELECT {_COLUMNS} FROM {self._ticks()} WHERE name = $1 AND status = 'claimed'"
            " AND lease_until >= $2"
        )
        rows = await self._store.call(
            f"read the runs in flight of {name!r}",
            lambda conn: conn.fetch(sql, name, to_utc(now)),
        )
        return [_tick_from_row(row) for row in rows]

    async def earliest_lease(self, names: Collection[str], owner: str) -> datetime | None:
        """When the first claim of another owner among ``names`` ends."""
        sql = (
            f"SELECT min(lease_until) FROM {self._ticks()} WHERE name = ANY($1::text[])"
            " AND status = 'claimed' AND owner IS DISTINCT FROM $2"
        )
        found: datetime | None = await self._store.call(
            "read the tick claims", lambda conn: conn.fetchval(sql, list(names), owner)
        )
        return found

    async def get(self, name: str, key: str) -> TickRecord | None:
        """One tick's row."""
        sql = f"SELECT {_COLUMNS} FROM {self._ticks()} WHERE name = $1 AND key = $2"
        row = await self._store.call(
            f"read tick {key} of {name!r}", lambda conn: conn.fetchrow(sql, name, key)
        )
        return None if row is None else _tick_from_row(row)

    async def history(self, name: str, *, limit: int = 100) -> list[TickRecord]:
        """The ticks of ``name``, newest first."""
        sql = (
            f"SELECT {_COLUMNS} FROM {self._ticks()} WHERE name = $1"
            " ORDER BY tick DESC, key DESC LIMIT $2"
        )
        rows = await self._store.call(
            f"read the ticks of {name!r}", lambda conn: conn.fetch(sql, name, limit)
        )
        return [_tick_from_row(row) for row in rows]

    async def cursor(self, name: str) -> str | None:
        """A sensor's cursor."""
        sql = f"SELECT cursor FROM {self._names()} WHERE name = $1"
        found: str | None = await self._store.call(
            f"read the cursor of sensor {name!r}", lambda conn: conn.fetchval(sql, name)
        )
        return found

    async def commit_poll(
        self,
        name: str,
        expected: str | None,
        cursor: str | None,
        records: Sequence[TickRecord],
    ) -> list[TickRecord] | None:
        """Store the cursor and the new requests in one transaction, if the cursor is
        still ``expected`` (the sensor's row is locked while it is checked)."""
        lock = f"SELECT cursor FROM {self._names()} WHERE name = $1 FOR UPDATE"
        update = f"UPDATE {self._names()} SET cursor = $2 WHERE name = $1"
        insert = self._insert()

        async def commit(conn: Connection) -> list[TickRecord] | None:
            async with conn.transaction():
                row = await conn.fetchrow(lock, name)
                if row is None:
                    raise KeyError(f"sensor {name!r} is not registered")
                if row["cursor"] != expected:
                    return None
                new = [r for r in records if await conn.fetchval(insert, *_args(r)) is not None]
                if cursor != expected:
                    await conn.execute(update, name, cursor)
                return new

        return await self._store.call(f"commit a poll of sensor {name!r}", commit)
