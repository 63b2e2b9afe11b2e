"""Cron ticks in a time zone: cronsim's wall times mapped to instants across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstone.ext.schedule import CronTicks, Schedule, ScheduleDefinitionError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(ticks: list[datetime], zone: ZoneInfo) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M%z") for t in ticks]


def test_a_daily_tick_in_the_spring_gap_fires_once_at_the_first_instant_after_it() -> None:
    ticks = list(CronTicks("30 2 * * *", "Europe/Paris").between(utc(2025, 3, 29), utc(2025, 4, 1)))
    assert local(ticks, PARIS) == ["03-29 02:30+0100", "03-30 03:00+0200", "03-31 02:30+0200"]
    ny = list(
        CronTicks("30 2 * * *", "America/New_York").between(utc(2025, 3, 8), utc(2025, 3, 11))
    )
    assert local(ny, NEW_YORK) == ["03-08 02:30-0500", "03-09 03:00-0400", "03-10 02:30-0400"]


def test_a_daily_tick_in_the_repeated_autumn_hour_fires_once_at_its_first_occurrence() -> None:
    ticks = list(
        CronTicks("30 2 * * *", "Europe/Paris").between(utc(2025, 10, 25), utc(2025, 10, 28))
    )
    assert local(ticks, PARIS) == ["10-25 02:30+0200", "10-26 02:30+0200", "10-27 02:30+0100"]
    ny = list(
        CronTicks("30 1 * * *", "America/New_York").between(utc(2025, 11, 1), utc(2025, 11, 4))
    )
    assert local(ny, NEW_YORK) == ["11-01 01:30-0400", "11-02 01:30-0400", "11-03 01:30-0500"]


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Paris", utc(2025, 3, 29, 12)),
        ("Europe/Paris", utc(2025, 10, 25, 12)),
        ("America/New_York", utc(2025, 3, 8, 12)),
        ("America/New_York", utc(2025, 11, 1, 12)),
    ],
)
@pytest.mark.parametrize("minute", [0, 30])
def test_an_hourly_schedule_fires_once_per_real_hour_across_both_changes(
    zone: str, start: datetime, minute: int
) -> None:
    ticks = list(CronTicks(f"{minute} * * * *", zone).between(start, start + timedelta(hours=48)))
    assert len(ticks) == 48
    assert all(b - a == timedelta(hours=1) for a, b in zip(ticks, ticks[1:], strict=False))
    assert all(t.minute == minute for t in ticks)


def test_the_autumn_hour_at_half_past_one_fires_in_both_real_hours_not_twice_in_one() -> None:
    ticks = list(
        CronTicks("30 * * * *", "America/New_York").between(
            utc(2025, 11, 2, 4), utc(2025, 11, 2, 8)
        )
    )
    assert local(ticks, NEW_YORK) == [
        "11-02 00:30-0400",
        "11-02 01:30-0400",
        "11-02 01:30-0500",
        "11-02 02:30-0500",
    ]
    assert len(set(ticks)) == len(ticks)


@given(
    st.sampled_from(["0 * * * *", "15 */2 * * *", "30 2 * * *", "0 0 * * 1", "*/20 1-3 * * *"]),
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_ticks_strictly_increase_and_next_after_agrees_with_between(
    cron: str, zone: str, start: datetime
) -> None:
    ticks = CronTicks(cron, zone)
    begin = start.replace(tzinfo=UTC)
    found = list(ticks.between(begin, begin + timedelta(days=3)))
    assert all(a < b for a, b in zip(found, found[1:], strict=False))
    assert all(t > begin for t in found)
    if found:
        assert ticks.next_after(begin) == found[0]
        assert ticks.next_after(found[0] - timedelta(microseconds=1)) == found[0]


def test_bad_cron_and_zone_are_refused_at_definition_naming_the_schedule() -> None:
    import flowstone as fs

    @fs.asset
    def a() -> int:
        return 1

    with pytest.raises(ScheduleDefinitionError, match=r"'nightly'.*cron="):
        Schedule([a], cron="61 * * * *", name="nightly")
    with pytest.raises(ScheduleDefinitionError, match=r"'nightly'.*timezone=.*Mars/Olympus"):
        Schedule([a], cron="0 * * * *", timezone="Mars/Olympus", name="nightly")
    with pytest.raises(ScheduleDefinitionError, match=r"overlap="):
        Schedule([a], cron="0 * * * *", overlap="queue", name="n")  # type: ignore[arg-type]
    with pytest.raises(ScheduleDefinitionError, match=r"catchup="):
        Schedule([a], cron="0 * * * *", catchup=6, name="n")  # type: ignore[arg-type]
    with pytest.raises(ScheduleDefinitionError, match=r"select="):
        Schedule([a], "nope", cron="0 * * * *", name="n")
    with pytest.raises(ScheduleDefinitionError, match=r"name"):
        Schedule([a], cron="0 * * * *", name="bad name")
