"""Cron ticks in a time zone, as instants in UTC, with the daylight-saving changes handled.

Cron expressions are parsed and stepped by ``cronsim`` (aiocron's parser), always on naive
*wall-clock* times of the schedule's zone; this module maps each wall time to the real
instants it names, through :mod:`zoneinfo`:

- an ordinary wall time names one instant;
- a wall time inside a spring-forward gap does not exist: a schedule that does not run
  every hour (a daily ``30 2 * * *``) fires once, at the first instant that exists after
  it (the change itself: 03:00 in Paris); a schedule that runs every hour skips it, since
  the hour after the gap has its own tick (so it fires once per real hour);
- a wall time inside the repeated autumn hour names two instants: a schedule that does
  not run every hour fires at the **first** occurrence only; a schedule that runs every
  hour fires at both, once per real hour.

A schedule "runs every hour" when its hour field matches all 24 hours (``0 * * * *``,
``*/15 * * * *``). Instants are deduplicated, so a tick's identity, (schedule, instant
in UTC), is never fired twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["CronTicks"]

#: Wider than any daylight-saving change (they are at most two hours).
_MARGIN = timedelta(hours=3)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


class CronTicks:
    """The ticks of one cron expression in one time zone.

    :param cron: a five-field cron expression (``"30 2 * * *"``)
    :param timezone: an IANA zone name (``"Europe/Paris"``); default UTC
    :raises ValueError: the expression or the zone is not valid (the message says which)
    """

    def __init__(self, cron: str, timezone: str = "UTC") -> None:
        if not isinstance(cron, str):
            raise ValueError(f"cron must be a string, not {cron!r}")
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        try:
            probe = CronSim(cron, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"invalid cron expression {cron!r}: {exc}") from exc
        self.cron = cron
        self.timezone = timezone
        #: Whether the expression matches every hour (real-time behaviour across changes).
        self.every_hour = len(probe.hours) == 24

    def __repr__(self) -> str:
        return f"CronTicks({self.cron!r}, {self.timezone!r})"

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)

    def _exists(self, wall: datetime, fold: int) -> datetime | None:
        aware = wall.replace(tzinfo=self.zone, fold=fold)
        utc = aware.astimezone(UTC)
        back = utc.astimezone(self.zone).replace(tzinfo=None)
        return utc if back == wall else None

    def _gap_end(self, wall: datetime) -> datetime:
        """The first instant that exists after ``wall`` (a wall time in a gap): the change."""
        low = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)  # offset after
        high = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)  # offset before
        low, high = min(low, high), max(low, high)
        before = _offset(self.zone, low)
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if _offset(self.zone, middle) == before:
                low = middle
            else:
                high = middle
        return high.replace(microsecond=0)

    def instants(self, wall: datetime) -> list[datetime]:
        """The instants (UTC) at which the wall time ``wall`` fires (0, 1 or 2)."""
        first = self._exists(wall, 0)
        second = self._exists(wall, 1)
        if first is None and second is None:  # in a gap
            return [] if self.every_hour else [self._gap_end(wall)]
        found = sorted({t for t in (first, second) if t is not None})
        return found if self.every_hour else found[:1]

    def _near_change(self, instant: datetime) -> bool:
        return _offset(self.zone, instant - _MARGIN) != _offset(self.zone, instant + _MARGIN)

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (timezone-aware)."""
        after = after.astimezone(UTC)
        near = self._near_change(after)
        start = self._wall(after) - (_MARGIN if near else timedelta(0))
        best: datetime | None = None
        limit: datetime | None = None
        for wall in CronSim(self.cron, start):
            if limit is not None and wall > limit:
                break
            for instant in self.instants(wall):
                if instant > after and (best is None or instant < best):
                    best = instant
            if best is not None and limit is None:
                if not (near or self._near_change(best)):
                    break
                limit = self._wall(best) + _MARGIN
        assert best is not None  # cronsim raises on an expression that never matches
        return best

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The ticks in ``(start, end]``, in order."""
        tick = self.next_after(start)
        while tick <= end:
            yield tick
            tick = self.next_after(tick)
