"""Rows and records: the store's records as statement parameters, and back.

The write statements take a record as the fields of ``RECORD_FIELDS`` (and a value as
``VALUE_FIELDS``), as scalars for one record or as one array per column for a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstone import MaterializationRecord, RunRecord, RunStatus, Status

from ._sql import clean_text, dump_json, load_json, to_utc

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from ._buffer import Batch, PendingValue, RecordKey

__all__ = [
    "record_from_row",
    "record_row",
    "run_from_row",
    "started_key",
    "value_row",
    "where_names",
    "where_record",
    "write_arguments",
]


def where_record(record: MaterializationRecord) -> str:
    """``asset 'a' partition 'p' in run 'r'``, for messages."""
    return where_names(record.asset, record.partition) + f" in run {record.run_id!r}"


def where_names(asset: str, partition: str | None) -> str:
    """``asset 'a' partition 'p'``, for messages."""
    where = f"asset {asset!r}"
    return where if partition is None else f"{where} partition {partition!r}"


def started_key(record: MaterializationRecord) -> tuple[bool, datetime | None]:
    """Sort key: newest start first when reversed, records without a start last."""
    return (record.started_at is not None, to_utc(record.started_at))


def record_row(key: RecordKey, record: MaterializationRecord, *, to_latest: bool) -> list[Any]:
    """The write statements' record fields, in ``RECORD_FIELDS`` order."""
    return [
        record.run_id,
        record.asset,
        key[2],
        record.partition,
        str(record.status),
        record.attempts,
        to_utc(record.started_at),
        to_utc(record.ended_at),
        clean_text(record.error),
        clean_text(record.error_type),
        dump_json(record.metadata),
        clean_text(record.code_version),
        clean_text(record.data_version),
        dump_json(record.input_versions),
        clean_text(record.io_manager),
        record.reused,
        to_latest,
    ]


def value_row(value: PendingValue) -> list[Any]:
    """The write statements' value fields, in ``VALUE_FIELDS`` order."""
    return [
        value.asset,
        value.partition_id,
        value.partition,
        value.format,
        value.json_text,
        value.data,
        value.run_id,
    ]


def write_arguments(batch: Batch) -> list[list[Any]]:
    """The array parameters of the batch ``write`` statement (one array per column)."""
    entries = list(batch.records.items())
    # The last succeeded record of each (asset, partition) becomes the current one.
    to_latest: set[RecordKey] = set()
    seen: set[tuple[str, str]] = set()
    for key, record in reversed(entries):
        if record.status is Status.SUCCEEDED and (key[1], key[2]) not in seen:
            seen.add((key[1], key[2]))
            to_latest.add(key)
    # In the order first saved (a batch never shares a key with another in-flight batch of
    # this process; a deadlock with another process is retried).
    rows = [record_row(key, record, to_latest=key in to_latest) for key, record in entries]
    values = [value_row(value) for value in batch.values.values()]
    record_columns = (
        [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(17)]
    )
    value_columns = (
        [list(column) for column in zip(*values, strict=True)] if values else [[] for _ in range(7)]
    )
    return record_columns + value_columns


def record_from_row(row: asyncpg.Record) -> MaterializationRecord:
    """A record read back from ``materializations`` or ``latest``."""
    return MaterializationRecord(
        run_id=row["run_id"],
        asset=row["asset"],
        partition=row["partition_key"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        error=row["error"],
        error_type=row["error_type"],
        metadata=load_json(row["metadata"]) or {},
        code_version=row["code_version"],
        data_version=row["data_version"],
        input_versions=load_json(row["input_versions"]) or {},
        io_manager=row["io_manager"],
        reused=row["reused"],
    )


def run_from_row(row: asyncpg.Record) -> RunRecord:
    """A run read back from ``runs``."""
    return RunRecord(
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        selection=tuple(row["selection"] or ()),
        partition=row["partition_key"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        tags=load_json(row["tags"]) or {},
    )
