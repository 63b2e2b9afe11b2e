"""Durable dynamic partitions: the ``DynamicPartitionStore`` half of ``PostgresStore``.

Keys live in the schema's ``dynamic_partitions`` table (migration 0006), one row per
(name, key), ordered by an identity column, so every process sees the keys any of them
added, in the order they were first added. Adding is ``INSERT … ON CONFLICT DO NOTHING``
and removing a ``DELETE``: both are idempotent and safe under concurrent use, and commit
before they return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._database import PostgresDatabase

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._sql import Connection

__all__ = ["DynamicPartitionRows"]


class DynamicPartitionRows(PostgresDatabase):
    """Implements :class:`~flowstone.protocols.DynamicPartitionStore` on the store's pool
    (a base of ``PostgresStore``)."""

    async def add_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Add keys to ``name``; return those that were new, in the order given."""
        wanted = list(dict.fromkeys(keys))
        sql = (
            f"INSERT INTO {self.table('dynamic_partitions')} (name, partition_key)"
            " SELECT $1, k FROM unnest($2::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i"
            " ON CONFLICT DO NOTHING RETURNING partition_key"
        )

        async def insert(conn: Connection) -> list[str]:
            return [r["partition_key"] for r in await conn.fetch(sql, name, wanted)]

        added = set(await self.call(f"add dynamic partitions of {name!r}", insert))
        return [k for k in wanted if k in added]

    async def remove_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Remove keys from ``name``; return those that were there, in the order given."""
        wanted = list(dict.fromkeys(keys))
        sql = (
            f"DELETE FROM {self.table('dynamic_partitions')}"
            " WHERE name = $1 AND partition_key = ANY($2::text[]) RETURNING partition_key"
        )

        async def delete(conn: Connection) -> list[str]:
            return [r["partition_key"] for r in await conn.fetch(sql, name, wanted)]

        removed = set(await self.call(f"remove dynamic partitions of {name!r}", delete))
        return [k for k in wanted if k in removed]

    async def dynamic_partition_keys(self, name: str) -> list[str]:
        """The keys of ``name``, in the order they were first added."""
        sql = (
            f"SELECT partition_key FROM {self.table('dynamic_partitions')}"
            " WHERE name = $1 ORDER BY seq"
        )

        async def select(conn: Connection) -> list[str]:
            return [r["partition_key"] for r in await conn.fetch(sql, name)]

        result: list[str] = await self.call(f"list dynamic partitions of {name!r}", select)
        return result
