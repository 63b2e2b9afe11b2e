"""Properties of TimeWindowMapping, checked with hypothesis against a brute-force overlap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
# Around daylight-saving changes of the zones above, and a leap day.
ANCHORS = [date(2025, 3, 24), date(2025, 10, 20), date(2024, 2, 19), date(2025, 3, 31)]


@st.composite
def partitionings(draw: st.DrawFn) -> fs.TimeWindowPartitions:
    zone = draw(st.sampled_from(ZONES))
    anchor = draw(st.sampled_from(ANCHORS)) + timedelta(days=draw(st.integers(-3, 3)))
    kind = draw(st.sampled_from(["hourly", "daily", "weekly", "monthly"]))
    if kind == "hourly":
        start = datetime(anchor.year, anchor.month, anchor.day)
        return fs.HourlyPartitions(start=start, end=start + timedelta(days=9), timezone=zone)
    if kind == "daily":
        return fs.DailyPartitions(start=anchor, end=anchor + timedelta(days=40), timezone=zone)
    if kind == "weekly":
        week_start = draw(st.integers(0, 6))
        first = anchor - timedelta(days=(anchor.weekday() - week_start) % 7)
        return fs.WeeklyPartitions(
            start=first, end=first + timedelta(weeks=8), timezone=zone, week_start=week_start
        )
    first = anchor.replace(day=1)
    return fs.MonthlyPartitions(start=first, end=date(first.year + 1, 1, 1), timezone=zone)


def brute_force(
    downstream: fs.TimeWindowPartitions, key: str, upstream: fs.TimeWindowPartitions
) -> list[str]:
    start, end = (t.astimezone(UTC) for t in downstream.window(key))
    found = []
    for candidate in upstream.keys():
        up_start, up_end = (t.astimezone(UTC) for t in upstream.window(candidate))
        if up_start < end and start < up_end:
            found.append(candidate)
    return found


@settings(max_examples=150)
@given(partitionings(), partitionings(), st.data())
def test_time_window_mapping_agrees_with_brute_force_overlap(
    downstream: fs.TimeWindowPartitions, upstream: fs.TimeWindowPartitions, data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(downstream.keys()))
    mapping = fs.TimeWindowMapping()
    mapping.check(downstream, upstream, asset="down", dependency="up")
    assert list(mapping.upstream_keys(key, downstream, upstream)) == brute_force(
        downstream, key, upstream
    )


@settings(max_examples=60)
@given(partitionings(), st.data())
def test_each_window_maps_to_itself_and_last_n_is_a_suffix(
    partitions: fs.TimeWindowPartitions, data: st.DataObject
) -> None:
    keys = partitions.keys()
    index = data.draw(st.integers(0, len(keys) - 1))
    n = data.draw(st.integers(1, 10))
    key = keys[index]
    assert list(fs.TimeWindowMapping().upstream_keys(key, partitions, partitions)) == [key]
    window = list(fs.LastN(n).upstream_keys(key, partitions, partitions))
    assert window == list(keys[max(0, index - n + 1) : index + 1])
    previous = list(fs.Offset(-1).upstream_keys(key, partitions, partitions))
    assert previous == ([keys[index - 1]] if index else [])
