"""Weekly partitions: one partition per week, starting on a chosen day of the week."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import PartitionError
from .partitions import TimeWindowPartitions, _utc_now

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["WeeklyPartitions"]

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _week_start(value: object) -> int:
    if isinstance(value, str) and value.lower() in _DAYS:
        return _DAYS.index(value.lower())
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    raise PartitionError(
        None,
        None,
        f"week_start must be a day name ('monday' … 'sunday') or 0-6 (Monday is 0), not {value!r}",
    )


class WeeklyPartitions(TimeWindowPartitions):
    """One partition per week, from local midnight of ``week_start`` to the next one.

    Keys are the weeks' first days, like ``"2025-01-06"``. The other arguments are those
    of :class:`TimeWindowPartitions`; ``start`` must be a ``week_start`` day.

    :param week_start: the first day of a week: ``"monday"`` (the default, as ISO 8601)
        to ``"sunday"``, or 0 (Monday) to 6 (Sunday)
    :raises PartitionError: ``week_start`` is not a day, or a bound is not a week's start
    """

    unit = "week"
    default_fmt = "%Y-%m-%d"
    __slots__ = ("_week_start",)

    def __init__(
        self,
        start: str | date | datetime,
        end: str | date | datetime | None = None,
        timezone: str = "UTC",
        fmt: str | None = None,
        *,
        week_start: str | int = "monday",
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._week_start = _week_start(week_start)
        super().__init__(start, end, timezone, fmt, now=now)

    @property
    def week_start(self) -> str:
        """The first day of each week, by name (``"monday"``)."""
        return _DAYS[self._week_start]

    def _floor(self, wall: datetime) -> datetime:
        day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=(day.weekday() - self._week_start) % 7)

    def _next(self, wall: datetime) -> datetime:
        return wall + timedelta(days=7)

    def _identity(self) -> tuple[datetime, datetime | None, str, str]:
        start, end, timezone, fmt = super()._identity()
        return start, end, timezone, f"{fmt}|{self._week_start}"

    def __repr__(self) -> str:
        text = super().__repr__()
        if self._week_start:
            text = text[:-1] + f", week_start={self.week_start!r})"
        return text
