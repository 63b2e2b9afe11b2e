"""A :class:`Schedule`: which assets of a pipeline to materialize on which cron ticks."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import flowstone as fs

from ._cron import CronTicks
from ._errors import ScheduleDefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Overlap", "Schedule", "check_name", "pipeline_of"]

#: What a schedule does with a tick while its previous run still runs.
Overlap = Literal["skip", "buffer_one", "allow"]
_OVERLAPS = ("skip", "buffer_one", "allow")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def check_name(kind: str, name: object) -> str:
    """``name`` if it is a valid schedule or sensor name (letters, digits, ``_.-``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ScheduleDefinitionError(
            f"{kind} name must be letters, digits, '_', '.' or '-' (starting with a letter "
            f"or digit), not {name!r}"
        )
    return name


def pipeline_of(assets: Any) -> fs.Pipeline:
    """A pipeline from a pipeline or a list of assets."""
    if isinstance(assets, fs.Pipeline):
        return assets
    if isinstance(assets, fs.AssetDef):
        return fs.Pipeline([assets])
    return fs.Pipeline(list(assets))


class Schedule:
    """Materialize ``select`` of ``pipeline`` on every tick of ``cron`` in ``timezone``.

    ::

        nightly = Schedule(
            pipeline, select="revenue", cron="30 2 * * *", timezone="Europe/Paris",
            partition=lambda tick: (tick.date() - timedelta(days=1)).isoformat(),
            overlap="skip", catchup=timedelta(hours=6), name="nightly-revenue",
        )

    Ticks follow the wall clock of ``timezone`` (see :mod:`._cron` for the daylight-saving
    changes: a daily tick in the spring gap fires at the change, one in the repeated
    autumn hour at its first occurrence, an hourly schedule once per real hour). Each
    fire is a run with the id ``name:20250102T013000Z`` (the tick in UTC), tagged
    ``schedule`` and ``tick``.

    :param pipeline: the pipeline (or a list of assets) to materialize
    :param select: asset names (or assets) to materialize; default the whole pipeline
    :param cron: a five-field cron expression
    :param timezone: an IANA zone (default ``"UTC"``)
    :param partition: the run's partition key from the tick (a timezone-aware datetime in
        ``timezone``); default none
    :param overlap: ``"skip"``: a tick is skipped (and recorded so) while the previous run
        of this schedule still runs; ``"buffer_one"``: one tick waits for it, later ones
        are skipped; ``"allow"``: runs overlap
    :param catchup: missed ticks younger than this fire when the scheduler (re)starts, in
        tick order; older ones are recorded as skipped. ``None``: never catch up
    :param name: the schedule's name, unique in a scheduler (default: the pipeline's name,
        else the first selected asset's)
    :raises ScheduleDefinitionError: a setting is wrong (the message names it)
    """

    kind = "schedule"

    def __init__(
        self,
        pipeline: Any,
        select: Any = None,
        *,
        cron: str,
        timezone: str = "UTC",
        partition: Callable[[datetime], str | None] | None = None,
        overlap: Overlap = "skip",
        catchup: timedelta | None = None,
        name: str | None = None,
    ) -> None:
        label = name or "schedule"
        try:
            self.pipeline = pipeline_of(pipeline)
        except (fs.FlowstoneError, TypeError) as exc:
            raise ScheduleDefinitionError(f"schedule {label!r}: pipeline= {exc}") from exc
        try:
            self.select = tuple(self.pipeline.resolve(select)) if select is not None else ()
        except fs.FlowstoneError as exc:
            raise ScheduleDefinitionError(f"schedule {label!r}: select= {exc}") from exc
        try:
            self.ticks = CronTicks(cron, timezone)
        except ValueError as exc:
            setting = "timezone" if "zone" in str(exc) else "cron"
            raise ScheduleDefinitionError(f"schedule {label!r}: {setting}= {exc}") from exc
        if partition is not None and not callable(partition):
            raise ScheduleDefinitionError(
                f"schedule {label!r}: partition= must be a function of the tick, not {partition!r}"
            )
        if overlap not in _OVERLAPS:
            raise ScheduleDefinitionError(
                f"schedule {label!r}: overlap= must be one of {_OVERLAPS}, not {overlap!r}"
            )
        if catchup is not None and (not isinstance(catchup, timedelta) or catchup < timedelta(0)):
            raise ScheduleDefinitionError(
                f"schedule {label!r}: catchup= must be a timedelta >= 0 or None, not {catchup!r}"
            )
        default = self.pipeline.name or (self.select[0] if self.select else None)
        if name is None and default is None:
            raise ScheduleDefinitionError(
                f"schedule on {cron!r}: pass name= (the pipeline has no name to use)"
            )
        self.name = check_name("schedule", name if name is not None else default)
        self.cron = cron
        self.timezone = timezone
        self.partition_fn = partition
        self.overlap: Overlap = overlap
        self.catchup = catchup

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, cron={self.cron!r}, timezone={self.timezone!r})"

    def partition_for(self, tick: datetime) -> str | None:
        """The partition of the run of ``tick`` (``tick`` shown in the schedule's zone)."""
        if self.partition_fn is None:
            return None
        return self.partition_fn(tick.astimezone(self.ticks.zone))

    def next_ticks(self, after: datetime, count: int = 5) -> list[datetime]:
        """The next ``count`` ticks after ``after`` (UTC instants)."""
        found: list[datetime] = []
        for _ in range(count):
            after = self.ticks.next_after(after)
            found.append(after)
        return found
