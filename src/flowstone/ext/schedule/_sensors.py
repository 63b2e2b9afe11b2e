"""Sensors: the :class:`Sensor` protocol, function sensors and :class:`AssetSensor`.

A sensor is polled every ``interval`` seconds (on the runtime's clock) with its stored
cursor and returns a :class:`SensorResult`: runs to request and its new cursor. The
scheduler stores the cursor and the requests in one atomic step (durably with
PostgreSQL); a request's ``run_key`` de-duplicates per sensor, permanently.
"""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import flowstone as fs
from flowstone import Status

from ._errors import ScheduleDefinitionError
from ._spec import check_name, pipeline_of
from ._types import RunRequest, SensorResult

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from flowstone import MaterializationRecord

__all__ = ["AssetSensor", "FunctionSensor", "RuntimeAware", "Sensor", "sensor"]

#: Records an ``AssetSensor`` reads at first per poll (more when a burst needs it).
_PAGE = 200


@runtime_checkable
class Sensor(Protocol):
    """What the scheduler polls.

    ``name`` is unique in a scheduler; ``interval`` is the seconds between polls;
    ``pipeline`` the pipeline its runs materialize (``None``: the scheduler's
    ``pipeline=``). ``poll`` gets the stored cursor (``None`` at first) and may raise: the
    error is logged and emitted, the cursor stays, and the poll is retried with backoff.
    """

    name: str
    interval: float
    pipeline: fs.Pipeline | None

    async def poll(self, cursor: str | None) -> SensorResult:
        """The runs to request since ``cursor``, and the new cursor."""
        ...


@runtime_checkable
class RuntimeAware(Protocol):
    """A sensor that reads the runtime (its store): the scheduler attaches it first."""

    def attach(self, runtime: fs.Runtime) -> None:
        """Called by the scheduler with its runtime before the first poll."""
        ...


def _check_interval(label: str, interval: object) -> float:
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ScheduleDefinitionError(
            f"sensor {label!r}: interval= must be a number of seconds > 0, not {interval!r}"
        )
    return float(interval)


def _pipeline(label: str, pipeline: Any) -> fs.Pipeline | None:
    if pipeline is None:
        return None
    try:
        return pipeline_of(pipeline)
    except (fs.FlowstoneError, TypeError) as exc:
        raise ScheduleDefinitionError(f"sensor {label!r}: pipeline= {exc}") from exc


class FunctionSensor:
    """A sensor from an async function ``poll(cursor) -> SensorResult`` (see :func:`sensor`).

    The function may also return a list of :class:`RunRequest` (the cursor stays) or
    ``None`` (nothing to do).
    """

    def __init__(
        self,
        function: Callable[[str | None], Awaitable[Any]],
        *,
        interval: float = 30,
        pipeline: Any = None,
        name: str | None = None,
    ) -> None:
        label = str(name or getattr(function, "__name__", "sensor"))
        if not inspect.iscoroutinefunction(function):
            raise ScheduleDefinitionError(f"sensor {label!r}: @sensor takes an async def function")
        self.function = function
        self.name = check_name("sensor", label)
        self.interval = _check_interval(label, interval)
        self.pipeline = _pipeline(label, pipeline)
        self.__doc__ = function.__doc__

    def __repr__(self) -> str:
        return f"FunctionSensor({self.name!r}, interval={self.interval})"

    async def poll(self, cursor: str | None) -> SensorResult:
        """Call the function and normalise what it returns."""
        result = await self.function(cursor)
        if result is None:
            return SensorResult()
        if isinstance(result, SensorResult):
            return result
        if isinstance(result, RunRequest):
            return SensorResult(run_requests=[result])
        if isinstance(result, list | tuple) and all(isinstance(r, RunRequest) for r in result):
            return SensorResult(run_requests=list(result))
        raise TypeError(
            f"sensor {self.name!r} returned {result!r}; return a SensorResult, RunRequests or None"
        )


def sensor(
    *, interval: float = 30, pipeline: Any = None, name: str | None = None
) -> Callable[[Callable[[str | None], Awaitable[Any]]], FunctionSensor]:
    """Make an async function ``poll(cursor)`` a sensor::

        @sensor(interval=30)
        async def new_files(cursor: str | None) -> SensorResult:
            files = await list_since(cursor)
            return SensorResult(
                run_requests=[RunRequest(partition=f.day, run_key=f.name) for f in files],
                cursor=files[-1].name if files else cursor,
            )

    :param interval: seconds between polls
    :param pipeline: the pipeline its runs materialize (default: the scheduler's)
    :param name: the sensor's name (default: the function's)
    :raises ScheduleDefinitionError: not an async function, or a bad setting
    """

    def wrap(function: Callable[[str | None], Awaitable[Any]]) -> FunctionSensor:
        return FunctionSensor(function, interval=interval, pipeline=pipeline, name=name)

    return wrap


class AssetSensor:
    """Fires a run each time ``asset`` (of another pipeline, any process) is materialized.

    It reads the runtime store's records of ``asset``, so materializations made by any
    process sharing the store count; in process, the scheduler also wakes it at once on
    the asset's success event instead of at the next ``interval``. Each new succeeded,
    computed (not reused) record requests one run, with the record's partition (unless
    ``partition=`` maps it) and the run key ``asset:run_id:partition``. Its cursor is the
    newest record's end time; at its first poll it starts from the records already there
    (they fire nothing). A poll reads every record since its cursor, however many
    materializations (a backfill, say) happened since the last one.

    :param asset: the watched asset's name
    :param pipeline: the pipeline to materialize (default: the scheduler's)
    :param select: what of it to materialize (default: all)
    :param partition: maps the watched record's partition to the run's (default: the same)
    :param interval: seconds between polls of the store
    :param name: the sensor's name (default ``on-<asset>``)
    """

    def __init__(
        self,
        asset: str,
        *,
        pipeline: Any = None,
        select: Any = None,
        partition: Callable[[str | None], str | None] | None = None,
        interval: float = 30,
        name: str | None = None,
    ) -> None:
        if not isinstance(asset, str) or not asset:
            raise ScheduleDefinitionError(f"AssetSensor: asset= must be a name, not {asset!r}")
        label = name or f"on-{asset}"
        self.asset = asset
        self.name = check_name("sensor", label)
        self.interval = _check_interval(label, interval)
        self.pipeline = _pipeline(label, pipeline)
        self.select = select
        self.partition = partition
        self._runtime: fs.Runtime | None = None

    def __repr__(self) -> str:
        return f"AssetSensor({self.asset!r}, name={self.name!r})"

    def attach(self, runtime: fs.Runtime) -> None:
        """Read records from ``runtime``'s store."""
        self._runtime = runtime

    async def _records_since(self, since: str | None) -> list[MaterializationRecord]:
        """The asset's records, newest first, back to the first that started before
        ``since`` (an ISO end time; ``None``: just the newest): read a page, and read again
        with four times the limit while the oldest record read is still newer, so that a
        burst of materializations between two polls (a backfill) is seen whole."""
        assert self._runtime is not None
        store = self._runtime.store
        limit = _PAGE
        while True:
            records = await store.history(self.asset, None, limit=limit)
            if since is None or len(records) < limit:
                return records
            oldest = records[-1].started_at
            if oldest is None or oldest.isoformat() < since:
                return records
            limit *= 4

    async def poll(self, cursor: str | None) -> SensorResult:
        """A run request per record of the asset that ended after ``cursor``."""
        if self._runtime is None:
            raise RuntimeError(f"sensor {self.name!r} is not attached to a runtime")
        records = await self._records_since(
            None if cursor is None else json.loads(cursor)["ended_at"]
        )
        fresh = [
            r
            for r in records
            if r.status is Status.SUCCEEDED and not r.reused and r.ended_at is not None
        ]
        fresh.sort(key=lambda r: str(r.ended_at))
        if not fresh:  # nothing yet: every record from now on is new
            return SensorResult(cursor=cursor or json.dumps({"ended_at": ""}))
        newest = fresh[-1].ended_at
        assert newest is not None
        new_cursor = json.dumps({"ended_at": newest.isoformat()})
        if cursor is None:
            return SensorResult(cursor=new_cursor)
        since = json.loads(cursor)["ended_at"]
        requests = []
        for record in fresh:
            assert record.ended_at is not None
            if record.ended_at.isoformat() < since:
                continue
            part = record.partition if self.partition is None else self.partition(record.partition)
            requests.append(
                RunRequest(
                    select=self.select,
                    partition=part,
                    run_key=f"{record.asset}:{record.run_id}:{record.partition or ''}",
                    tags={"sensor.asset_run": record.run_id},
                )
            )
        return SensorResult(run_requests=requests, cursor=new_cursor)
