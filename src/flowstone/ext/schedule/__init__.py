"""Schedules and sensors: cron in time zones, exactly once across processes, virtual time.

::

    from datetime import timedelta
    from flowstone.ext.schedule import Schedule, Scheduler

    nightly = Schedule(
        pipeline, select="revenue", cron="30 2 * * *", timezone="Europe/Paris",
        partition=lambda tick: (tick.date() - timedelta(days=1)).isoformat(),
        overlap="skip", catchup=timedelta(hours=6), name="nightly-revenue",
    )

    async with Scheduler(runtime, [nightly, new_files]) as scheduler:
        ...                        # fires in the background of the current event loop

Cron expressions are parsed by ``cronsim``; time zones and daylight-saving changes are
handled on top of it (see :class:`CronTicks`). Each tick is claimed in a
:class:`ScheduleStore` before it fires (PostgreSQL with ``PostgresStore``: one fire per
tick across processes), and its run id, ``name:20250102T013000Z``, is derived from the
tick, so a fire is idempotent. Every wait is on the runtime's clock, so tests run in
virtual time (``flowstone.testing.VirtualClock``). Sensors (:class:`Sensor`,
:func:`sensor`, :class:`AssetSensor`) are polled by the same scheduler.

Needs the ``schedule`` extra: ``pip install 'flowstone[schedule]'``.
"""

from __future__ import annotations

try:
    import cronsim as _cronsim  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.schedule", "cronsim", "schedule") from _exc

from ._cron import CronTicks
from ._errors import ScheduleDefinitionError, UnknownScheduleError
from ._events import ScheduleEvent, SensorFailed, SensorPolled, TickFired, TickSkipped
from ._scheduler import Scheduler
from ._sensors import AssetSensor, FunctionSensor, RuntimeAware, Sensor, sensor
from ._spec import Overlap, Schedule
from ._store import MemoryScheduleStore, ScheduleStore, ScheduleStoreProvider, schedule_store_for
from ._types import RunRequest, ScheduleStatus, SensorResult, TickRecord, TickStatus, tick_key

__all__ = (
    "AssetSensor",
    "CronTicks",
    "FunctionSensor",
    "MemoryScheduleStore",
    "Overlap",
    "RunRequest",
    "RuntimeAware",
    "Schedule",
    "ScheduleDefinitionError",
    "ScheduleEvent",
    "ScheduleStatus",
    "ScheduleStore",
    "ScheduleStoreProvider",
    "Scheduler",
    "Sensor",
    "SensorFailed",
    "SensorPolled",
    "SensorResult",
    "TickFired",
    "TickRecord",
    "TickSkipped",
    "TickStatus",
    "UnknownScheduleError",
    "schedule_store_for",
    "sensor",
    "tick_key",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):  # typing aliases refuse
            pass
del _name, _obj
