"""In-memory implementations of the core protocols: the zero-configuration defaults.

They keep everything in the process, so a notebook or a test runs with nothing to set up.
Each is safe for concurrent use on one event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import ValueNotFoundError
from .events import Event
from .records import GateRecord, GateStatus, MaterializationRecord, RunRecord, RunStatus, Status
from .values import check_storable

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .protocols import IOContext

__all__ = ["LoggingSink", "MemoryEventSink", "MemoryGateStore", "MemoryIOManager", "MemoryStore"]


class MemoryIOManager:
    """Keeps values in a dict by (asset, partition). Values are stored as given, not copied.

    By default any Python object is kept (a notebook may hold a model or a DataFrame). In
    **strict mode** a value is stored only if a durable IO manager would store it and load
    it back the same: JSON-able data (with tuples, string keys only, valid Unicode, no
    cycles, not nested too deep), ``bytes`` or an Arrow table, as
    :func:`flowstone.protocols.check_storable` checks. Anything else (a set, a dict with an
    int key, a string with a lone surrogate, a list holding itself, an arbitrary object)
    raises :class:`~flowstone.StorageError` naming the asset, as the ``postgres`` IO manager
    would in production. The ``flowstone_runtime`` pytest fixture turns it on.

    :param strict: apply the durable value rules
    """

    def __init__(self, *, strict: bool = False) -> None:
        self._values: dict[tuple[str, str | None], Any] = {}
        self.strict = strict

    async def store(self, context: IOContext, value: Any) -> None:
        """Store ``value`` for (asset, partition).

        :raises StorageError: strict mode, and a durable IO manager could not store the
            value (nothing is stored)
        """
        if self.strict:
            check_storable(value, context.asset, context.partition)
        self._values[context.asset, context.partition] = value

    async def load(self, context: IOContext) -> Any:
        """Load the value, or raise :class:`~flowstone.ValueNotFoundError`."""
        try:
            return self._values[context.asset, context.partition]
        except KeyError:
            raise ValueNotFoundError(context.asset, context.partition) from None

    async def exists(self, context: IOContext) -> bool:
        """Whether a value is stored."""
        return (context.asset, context.partition) in self._values

    async def delete(self, context: IOContext) -> None:
        """Forget the value, if any."""
        self._values.pop((context.asset, context.partition), None)

    async def list_partitions(self, asset: str) -> list[str | None]:
        """Partitions with a stored value for ``asset``."""
        return [p for (a, p) in self._values if a == asset]

    def __repr__(self) -> str:
        strict = ", strict" if self.strict else ""
        return f"MemoryIOManager({len(self._values)} values{strict})"


class MemoryStore:
    """Runs and materialization records in memory."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._records: dict[str, dict[tuple[str, str | None], MaterializationRecord]] = {}
        self._latest: dict[tuple[str, str | None], MaterializationRecord] = {}
        self._history: dict[tuple[str, str | None], list[MaterializationRecord]] = {}

    async def create_run(self, run: RunRecord) -> tuple[RunRecord, bool]:
        """Create the run, or return the stored one with the same id."""
        existing = self._runs.get(run.run_id)
        if existing is not None:
            return existing, False
        self._runs[run.run_id] = run
        return run, True

    async def finish_run(self, run_id: str, status: RunStatus, ended_at: datetime) -> None:
        """Mark the run ended."""
        run = self._runs.get(run_id)
        if run is not None:
            self._runs[run_id] = run.replace(status=status, ended_at=ended_at)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or ``None``."""
        return self._runs.get(run_id)

    async def list_runs(self, *, limit: int = 100) -> list[RunRecord]:
        """Newest runs first."""
        runs = sorted(self._runs.values(), key=lambda r: r.started_at, reverse=True)
        return runs[:limit]

    async def save_record(self, record: MaterializationRecord) -> None:
        """Upsert the record of (run, asset, partition)."""
        key = (record.asset, record.partition)
        by_run = self._records.get(record.run_id)
        if by_run is None:
            by_run = self._records[record.run_id] = {}
        previous = by_run.get(key)
        by_run[key] = record
        history = self._history.get(key)
        if history is None:
            self._history[key] = [record]
        elif previous is not None and history and history[-1] is previous:
            history[-1] = record
        else:
            history.append(record)
        if record.status is Status.SUCCEEDED:
            self._latest[key] = record

    async def get_records(self, run_id: str) -> list[MaterializationRecord]:
        """All records of the run."""
        return list(self._records.get(run_id, {}).values())

    async def latest(self, asset: str, partition: str | None) -> MaterializationRecord | None:
        """The newest succeeded, not invalidated record."""
        return self._latest.get((asset, partition))

    async def history(
        self, asset: str, partition: str | None = None, *, limit: int = 100
    ) -> list[MaterializationRecord]:
        """Records of an asset, newest first."""
        if partition is not None:
            records = list(self._history.get((asset, partition), []))
        else:
            records = [r for (a, _), rs in self._history.items() if a == asset for r in rs]
        records.sort(key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        return records[:limit]

    async def invalidate(self, asset: str, partition: str | None) -> None:
        """Forget the current record of (asset, partition)."""
        self._latest.pop((asset, partition), None)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs)"


class MemoryGateStore:
    """Gates in memory (the default ``GateStore``): for one process, tests and notebooks.

    Each method runs without suspending, so on one event loop a resolution is atomic.
    """

    def __init__(self) -> None:
        self._gates: dict[str, GateRecord] = {}
        self._by_asset: dict[tuple[str, str, str | None], str] = {}

    async def create(self, gate: GateRecord) -> GateRecord:
        """Create the gate, or return the stored one with the same id."""
        stored = self._gates.setdefault(gate.gate_id, gate)
        if stored is gate:
            self._by_asset[gate.run_id, gate.asset, gate.partition] = gate.gate_id
        return stored

    async def get(self, gate_id: str) -> GateRecord | None:
        """The gate, or ``None``."""
        return self._gates.get(gate_id)

    async def latest(self, run_id: str, asset: str, partition: str | None) -> GateRecord | None:
        """The gate created last for (run, asset, partition), or ``None``."""
        gate_id = self._by_asset.get((run_id, asset, partition))
        return None if gate_id is None else self._gates.get(gate_id)

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
        """Close a waiting gate; a closed gate is returned unchanged.

        :return: the stored gate, and whether this call closed it
        :raises KeyError: no gate has this id
        """
        gate = self._gates[gate_id]
        if not gate.status.open:
            return gate, False
        closed = gate.replace(
            status=status, payload=payload, resolved_by=by, reason=reason, resolved_at=at
        )
        self._gates[gate_id] = closed
        return closed, True

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
        """Close a waiting gate (at ``at``, default now); a closed gate is returned unchanged.

        :raises KeyError: no gate has this id
        """
        gate, _ = await self.close(
            gate_id,
            status,
            at=at if at is not None else datetime.now(UTC),
            payload=payload,
            by=by,
            reason=reason,
        )
        return gate

    async def list_open(
        self, run_id: str | None = None, kind: str | None = None
    ) -> list[GateRecord]:
        """Waiting gates (of one run, of one kind, or all), oldest first."""
        return sorted(
            (
                g
                for g in self._gates.values()
                if g.status.open
                and (run_id is None or g.run_id == run_id)
                and (kind is None or g.kind == kind)
            ),
            key=lambda g: g.created_at,
        )

    def __repr__(self) -> str:
        return f"MemoryGateStore({len(self._gates)} gates)"


class MemoryEventSink:
    """Collects events in a list: for tests, notebooks and debugging.

    :param types: keep only events of these classes (default: all)
    """

    def __init__(self, types: tuple[type[Event], ...] = (Event,)) -> None:
        self.events: list[Event] = []
        self._types = types

    def emit(self, event: Event) -> None:
        """Keep the event."""
        if isinstance(event, self._types):
            self.events.append(event)

    def of_type(self, cls: type[Event]) -> list[Event]:
        """The kept events of one class (subclasses included)."""
        return [e for e in self.events if isinstance(e, cls)]

    def clear(self) -> None:
        """Forget the kept events."""
        self.events.clear()


class LoggingSink:
    """Logs events to the ``flowstone`` logger, each at the level its event gives.

    Failures at ``ERROR``, retries (and a plugin's failed items, such as a scatter's) at
    ``WARNING``, skips and run ends at ``INFO``, and everything else (runs and attempts
    starting, assets succeeding, progress) at ``DEBUG``; see :meth:`Event.log_entry
    <flowstone.events.Event.log_entry>`. ``levels`` chooses other levels. Each record
    carries ``record.flowstone``: the event's ``event`` class name, ``run_id``, and its
    ``asset`` and ``partition`` when it has them (see :mod:`flowstone.logging`).

    :param logger: where to log (default: the ``flowstone`` logger)
    :param levels: levels by event class (or class name), replacing the event's own; a
        class applies to its subclasses too, ``{flowstone.events.AssetSucceeded: logging.INFO}``
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        levels: Mapping[type[Event] | str, int] | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("flowstone")
        self.levels: dict[type[Event] | str, int] = dict(levels or {})
        self._chosen: dict[type[Event], int | None] = {}

    def _level_of(self, kind: type[Event]) -> int | None:
        try:
            return self._chosen[kind]
        except KeyError:
            pass
        level = None
        for base in kind.__mro__:
            level = self.levels.get(base, self.levels.get(base.__name__))
            if level is not None:
                break
        self._chosen[kind] = level
        return level

    def emit(self, event: Event) -> None:
        """Log the event, if its level is enabled."""
        level, message, args = event.log_entry()
        if self.levels:
            level = self._level_of(type(event)) or level
        if self.logger.isEnabledFor(level):
            fields: dict[str, object] = {"event": type(event).__name__, "run_id": event.run_id}
            asset = getattr(event, "asset", None)
            if asset is not None:
                fields["asset"] = asset
                fields["partition"] = getattr(event, "partition", None)
            self.logger.log(level, message, *args, extra={"flowstone": fields})
