"""Durable check results: the :class:`~flowstone.protocols.CheckStore` half of ``PostgresStore``.

Results live in the schema's ``check_results`` table (migration 0007), one row per check
of a value, appended and never updated. Each insert commits before it returns; its
``check_id`` is made here, so an insert retried after a dropped connection adds no second
row. ``runtime.check_history(asset)`` reads them back, newest first, in any process.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from flowstone.protocols import CheckRecord

from ._database import PostgresDatabase
from ._sql import clean_text, dump_json, load_json, partition_id, to_utc

if TYPE_CHECKING:
    import asyncpg

__all__ = ["CheckStorage", "check_from_row"]

_COLUMNS = (
    "run_id, asset, partition_key, check_name, severity, passed, metadata::text AS metadata,"
    " started_at, ended_at, error, error_type, data_version"
)


def check_from_row(row: asyncpg.Record) -> CheckRecord:
    """A check result read back from ``check_results``."""
    return CheckRecord(
        run_id=row["run_id"],
        asset=row["asset"],
        partition=row["partition_key"],
        check=row["check_name"],
        severity=row["severity"],
        passed=row["passed"],
        metadata=load_json(row["metadata"]) or {},
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
        error_type=row["error_type"],
        data_version=row["data_version"],
    )


class CheckStorage(PostgresDatabase):
    """Check results in PostgreSQL (a base of ``PostgresStore``)."""

    async def save_check(self, record: CheckRecord) -> None:
        """Append one check result (committed on return)."""
        sql = (
            f"INSERT INTO {self.table('check_results')} (check_id, run_id, asset, partition_id,"
            " partition_key, check_name, severity, passed, metadata, started_at, ended_at,"
            " error, error_type, data_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
            " $9::text::jsonb, $10, $11, $12, $13, $14) ON CONFLICT (check_id) DO NOTHING"
        )
        args = (
            uuid.uuid4().hex,
            record.run_id,
            record.asset,
            partition_id(record.partition),
            record.partition,
            record.check,
            record.severity,
            record.passed,
            dump_json(dict(record.metadata)),
            to_utc(record.started_at),
            to_utc(record.ended_at),
            clean_text(record.error),
            record.error_type,
            record.data_version,
        )
        await self.call(
            f"save check {record.check!r} of asset {record.asset!r}",
            lambda conn: conn.execute(sql, *args),
        )

    async def check_history(
        self,
        asset: str,
        partition: str | None = None,
        *,
        check: str | None = None,
        limit: int = 100,
    ) -> list[CheckRecord]:
        """Check results of ``asset`` (one partition, or all when ``None``), newest first."""
        sql = (
            f"SELECT {_COLUMNS} FROM {self.table('check_results')} WHERE asset = $1"
            " AND ($2::text IS NULL OR partition_id = $2)"
            " AND ($3::text IS NULL OR check_name = $3) ORDER BY seq DESC LIMIT $4"
        )
        part = None if partition is None else partition_id(partition)
        rows = await self.call(
            f"read the check history of asset {asset!r}",
            lambda conn: conn.fetch(sql, asset, part, check, limit),
        )
        return [check_from_row(row) for row in rows]
