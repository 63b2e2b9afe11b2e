"""The rows and states of a durable scatter barrier, as the statements read and write them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    import asyncpg

__all__ = [
    "BarrierInit",
    "BarrierRow",
    "Checkpoint",
    "Claimed",
    "Counts",
    "ItemRow",
    "LocalOutcome",
    "Outcome",
    "SourceConflict",
    "UnitRow",
    "checkpoint_of",
    "tolerance_columns",
]

#: One item result for :meth:`ItemStatements.complete`:
#: ``(idx, "succeeded" | "failed", json_text, raw_bytes, error_text, attempts)``.
Outcome = tuple[int, str, str | None, bytes | None, str | None, int]
#: One result of an item the starting process ran without inserting it first, for
#: :meth:`ItemStatements.complete_local`: an :data:`Outcome` followed by the item's JSON text
#: and raw bytes (kept only for failed items, which a reopened barrier runs again).
LocalOutcome = tuple[int, str, str | None, bytes | None, str | None, int, str | None, bytes | None]
#: One enumerated item for :meth:`ItemStatements.insert_page`:
#: ``(idx, key or None for the default key, json_text, raw_bytes)``.
ItemRow = tuple[int, str | None, str | None, bytes | None]
#: A closed batch for :meth:`ItemStatements.insert_page`: ``(unit, member idx in order)``.
UnitRow = tuple[int, list[int]]


def tolerance_columns(tolerated: int | float) -> tuple[int | None, int, int]:
    """``(tol_count, tol_num, tol_den)`` for a ``tolerated_failure`` setting.

    A fraction is read as the decimal it is written as, like the in-process scatter does.
    """
    if isinstance(tolerated, int):
        return tolerated, 0, 1
    fraction = Fraction(repr(tolerated))
    return None, fraction.numerator, fraction.denominator


@dataclass(frozen=True, slots=True)
class Counts:
    """A barrier's live state: status, enumeration progress and counters."""

    status: str
    reason: str | None
    total: int | None
    enumerated: int
    source_done: bool
    batches: int
    succeeded: int
    failed: int
    retried: int

    @property
    def finished(self) -> int:
        """Items with a terminal result."""
        return self.succeeded + self.failed

    @property
    def complete(self) -> bool:
        """Whether the source is read and every item is terminal."""
        return self.total is not None and self.source_done and self.finished >= self.total

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Counts:
        """Read a barrier's state from a row (its succeeded count includes the workers')."""
        return cls(
            status=row["status"],
            reason=row["reason"],
            total=row["total"],
            enumerated=row["enumerated"],
            source_done=row["source_done"],
            batches=row["batches"],
            succeeded=row["succeeded"],
            failed=row["failed"],
            retried=row["retried"],
        )


@dataclass(frozen=True, slots=True)
class BarrierRow:
    """A barrier as stored: what a worker needs to join it, and its state.

    :ivar id: the internal id items refer to
    :ivar key: the barrier's unique key (for scatter assets: ``[run_id, asset, partition]``
        as JSON)
    :ivar managed: whether a coordinator drives it (workers join only those)
    :ivar partition: the asset's partition key
    :ivar run_partition: the run's partition key (inputs may be partitioned)
    :ivar recipe: code version, partition and input versions: a barrier of another recipe
        is started over
    """

    id: int
    key: str
    managed: bool
    run_id: str
    asset: str
    partition: str | None
    run_partition: str | None
    pipeline: str | None
    code_version: str | None
    recipe: str
    input_versions: Mapping[str, str]
    attempt: int
    keyed: bool
    batched: bool
    tol_count: int | None
    tol_num: int
    tol_den: int
    counts: Counts

    @property
    def tolerated(self) -> int | float:
        """The ``tolerated_failure`` setting the barrier was made with."""
        if self.tol_count is not None:
            return self.tol_count
        return self.tol_num / self.tol_den

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> BarrierRow:
        """Read a whole barrier row."""
        return cls(
            id=row["id"],
            key=row["barrier_key"],
            managed=row["managed"],
            run_id=row["run_id"],
            asset=row["asset"],
            partition=row["partition_key"],
            run_partition=row["run_partition"],
            pipeline=row["pipeline"],
            code_version=row["code_version"],
            recipe=row["recipe"],
            input_versions=json.loads(row["input_versions"] or "{}"),
            attempt=row["attempt"],
            keyed=row["keyed"],
            batched=row["batched"],
            tol_count=row["tol_count"],
            tol_num=row["tol_num"],
            tol_den=row["tol_den"],
            counts=Counts.from_row(row),
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where enumeration of a barrier stands: items inserted and the reader's cursor."""

    enumerated: int
    cursor: str | None
    source_done: bool
    batches: int


@dataclass(frozen=True, slots=True)
class BarrierInit:
    """What a coordinator knows when it opens the barrier of a scatter asset."""

    key: str
    run_id: str
    asset: str
    partition: str | None
    run_partition: str | None
    pipeline: str | None
    code_version: str | None
    recipe: str
    input_versions: Mapping[str, str]
    attempt: int
    keyed: bool
    batched: bool
    tolerated: int | float
    total: int | None = None
    managed: bool = True

    def arguments(self) -> list[Any]:
        """The values of ``insert_barrier`` from ``$1`` on."""
        count, num, den = tolerance_columns(self.tolerated)
        return [
            self.key,
            self.managed,
            self.run_id,
            self.asset,
            self.partition,
            self.run_partition,
            self.pipeline,
            self.code_version,
            self.recipe,
            json.dumps(dict(self.input_versions), sort_keys=True),
            self.attempt,
            self.keyed,
            self.batched,
            count,
            num,
            den,
            self.total,
        ]


@dataclass(slots=True)
class Claimed:
    """Items one claim handed to this worker, grouped by unit (an item, or a batch).

    :ivar units: unit number → rows ``(idx, key, item_text, item_raw)`` in source order
    """

    units: dict[int, list[tuple[int, str | None, str | None, bytes | None]]] = field(
        default_factory=dict
    )


class SourceConflict(Exception):
    """Enumeration found a key twice, or an item whose key differs from the stored one.

    :param key: the key at fault
    :param index: the source position of the offending item
    :param duplicate: a duplicate key (else: the source changed between runs)
    """

    def __init__(self, key: str, index: int, *, duplicate: bool) -> None:
        self.key = key
        self.index = index
        self.duplicate = duplicate
        super().__init__(key, index, duplicate)


def checkpoint_of(row: asyncpg.Record) -> Checkpoint:
    """The enumeration checkpoint held in a barrier row."""
    return Checkpoint(
        enumerated=row["enumerated"],
        cursor=row["cursor"],
        source_done=row["source_done"],
        batches=row["batches"],
    )
