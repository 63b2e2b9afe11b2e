"""Tests of flowstone._core.partitions: static and time-window partitions, partition_keys."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flowstone._core.errors import PartitionError
from flowstone._core.partitions import (
    DailyPartitions,
    HourlyPartitions,
    MonthlyPartitions,
    PartitionsDefinition,
    StaticPartitions,
    TimeWindowPartitions,
    partition_keys,
)

if TYPE_CHECKING:
    from collections.abc import Callable

# Zones with whole-hour, half-hour and midnight DST changes, a skipped day (Apia, 2011)
# and odd offsets (Kolkata +05:30, Chatham +12:45).
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Pacific/Chatham",
    "Asia/Kolkata",
]


class FakeNow:
    """A settable clock for ``end=None`` partitions."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# -- static partitions -------------------------------------------------------------------


def test_static_keeps_order_and_validates() -> None:
    parts = StaticPartitions(["eu", "us", "apac"])
    assert parts.keys() == ("eu", "us", "apac")
    assert list(parts) == ["eu", "us", "apac"]
    assert len(parts) == 3
    assert parts.validate("us") == "us"
    assert "eu" in parts
    assert "EU" not in parts
    assert 3 not in parts
    assert isinstance(parts, PartitionsDefinition)


def test_static_unknown_key_names_asset_and_suggests() -> None:
    parts = StaticPartitions(["north", "south"])
    with pytest.raises(PartitionError) as info:
        parts.validate("nort", asset="sales")
    assert info.value.asset == "sales"
    assert info.value.key == "nort"
    assert "'sales'" in str(info.value)
    assert "did you mean 'north'?" in str(info.value)


def test_static_validate_rejects_non_str() -> None:
    with pytest.raises(PartitionError, match="must be a str, not int"):
        StaticPartitions(["1"]).validate(1, asset="a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        (["a", "b", "a"], "more than once"),
        (["a", ""], "must not be empty"),
        (["a", 1], "must be a str"),
        ("abc", "not a single string"),
    ],
)
def test_static_rejects_bad_keys(keys: object, message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        StaticPartitions(keys)  # type: ignore[arg-type]


def test_static_equality_and_repr() -> None:
    assert StaticPartitions(["a", "b"]) == StaticPartitions(iter(["a", "b"]))
    assert StaticPartitions(["a", "b"]) != StaticPartitions(["b", "a"])
    assert hash(StaticPartitions(["a"])) == hash(StaticPartitions(["a"]))
    assert repr(StaticPartitions(["a", "b"])) == "StaticPartitions(['a', 'b'])"


# -- time windows: examples --------------------------------------------------------------


def test_daily_keys_windows_and_range() -> None:
    days = DailyPartitions("2025-01-01", "2025-01-05")
    assert days.keys() == ("2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04")
    assert len(days) == 4
    assert days.window("2025-01-02") == (
        datetime(2025, 1, 2, tzinfo=ZoneInfo("UTC")),
        datetime(2025, 1, 3, tzinfo=ZoneInfo("UTC")),
    )
    assert days.range("2025-01-02", "2025-01-04") == ["2025-01-02", "2025-01-03", "2025-01-04"]
    assert days.range("2025-01-03", "2025-01-03") == ["2025-01-03"]
    assert days.key_for(datetime(2025, 1, 3, 23, 59, tzinfo=UTC)) == "2025-01-03"
    assert isinstance(days, PartitionsDefinition)
    assert isinstance(days, TimeWindowPartitions)


def test_hourly_and_monthly_key_shapes() -> None:
    hours = HourlyPartitions("2025-01-02T05:00", "2025-01-02T08:00")
    assert hours.keys() == ("2025-01-02T05:00", "2025-01-02T06:00", "2025-01-02T07:00")
    months = MonthlyPartitions("2024-11", "2025-03")
    assert months.keys() == ("2024-11", "2024-12", "2025-01", "2025-02")
    assert months.window("2024-12")[1] == datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))
    assert months.key_for(date(2025, 2, 28)) == "2025-02"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("2024-12-31", "before the first partition '2025-01-01'"),
        ("2025-01-05", "at or after the end '2025-01-05'"),
        ("2025-13-01", "malformed"),
        ("yesterday", "malformed"),
        ("2025-01-02T00:00", "malformed"),
    ],
)
def test_daily_invalid_keys(key: str, reason: str) -> None:
    days = DailyPartitions("2025-01-01", "2025-01-05")
    with pytest.raises(PartitionError, match=reason) as info:
        days.validate(key, asset="orders")
    assert info.value.asset == "orders"
    assert "asset 'orders'" in str(info.value)
    assert key not in days


def test_misaligned_key_suggests_window_start() -> None:
    hours = HourlyPartitions("2025-01-01")
    with pytest.raises(PartitionError, match="did you mean '2025-01-02T05:00'"):
        hours.validate("2025-01-02T05:30")


def test_non_canonical_key_is_canonicalised_but_not_contained() -> None:
    days = DailyPartitions("2025-01-01", "2025-02-01")
    assert days.validate("2025-1-2") == "2025-01-02"
    assert "2025-1-2" not in days
    assert "2025-01-02" in days
    assert None not in days


def test_bounds_accept_dates_datetimes_and_iso_strings() -> None:
    expected = DailyPartitions("2025-01-01", "2025-01-03")
    assert DailyPartitions(date(2025, 1, 1), date(2025, 1, 3)) == expected
    assert DailyPartitions(datetime(2025, 1, 1), "2025-01-03T00:00:00") == expected
    assert DailyPartitions("2025-01-01T00:00+00:00", "2025-01-03") == expected
    # aware bounds are converted to the partitions' time zone
    berlin = DailyPartitions(datetime(2024, 12, 31, 23, tzinfo=UTC), timezone="Europe/Berlin")
    assert berlin.start == datetime(2025, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MonthlyPartitions("2025-01-15"), "did you mean '2025-01'"),
        (lambda: DailyPartitions("2025-01-01T06:00"), "did you mean '2025-01-01'"),
        (lambda: DailyPartitions("2025-01-05", "2025-01-05"), "end must be after start"),
        (lambda: DailyPartitions("soon"), "neither a key like"),
        (lambda: DailyPartitions(20250101), "must be a str, date or datetime"),  # type: ignore[arg-type]
        (lambda: DailyPartitions("2025-01-01", timezone="Mars/Olympus"), "unknown time zone"),
        (lambda: DailyPartitions("2025-01-01", fmt="%Y-%m"), "does not round-trip"),
        (lambda: HourlyPartitions("2025-01-01", fmt="%Y-%m-%d"), "does not round-trip"),
    ],
)
def test_bad_definitions(make: Callable[[], object], message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        make()


def test_custom_format() -> None:
    days = DailyPartitions("20250101", "20250103", fmt="%Y%m%d")
    assert days.keys() == ("20250101", "20250102")
    assert days.key_for(datetime(2025, 1, 2, 12)) == "20250102"
    assert "fmt='%Y%m%d'" in repr(days)


def test_range_errors() -> None:
    days = DailyPartitions("2025-01-01", "2025-02-01")
    with pytest.raises(PartitionError, match="ends before its start '2025-01-05'"):
        days.range("2025-01-05", "2025-01-02", asset="a")
    with pytest.raises(PartitionError, match="at or after the end"):
        days.range("2025-01-05", "2025-02-01")


def test_key_for_outside_range_raises() -> None:
    days = DailyPartitions("2025-01-01", "2025-01-05")
    with pytest.raises(PartitionError, match="before the first partition"):
        days.key_for(datetime(2024, 12, 31, 23, 59))


def test_equality_hash_repr() -> None:
    a = DailyPartitions("2025-01-01", timezone="Europe/Berlin")
    assert a == DailyPartitions(date(2025, 1, 1), None, "Europe/Berlin")
    assert hash(a) == hash(DailyPartitions(date(2025, 1, 1), None, "Europe/Berlin"))
    assert a != DailyPartitions("2025-01-01")
    assert DailyPartitions("2025-01-01") != HourlyPartitions("2025-01-01")
    assert DailyPartitions("2025-01-01") != StaticPartitions(["2025-01-01"])
    assert repr(a) == "DailyPartitions(start='2025-01-01', end=None, timezone='Europe/Berlin')"


# -- time windows: the open end ----------------------------------------------------------


def test_open_end_runs_to_last_complete_window() -> None:
    now = FakeNow(datetime(2025, 1, 4, 12, 30, tzinfo=UTC))
    days = DailyPartitions("2025-01-01", now=now)
    assert days.keys() == ("2025-01-01", "2025-01-02", "2025-01-03")
    with pytest.raises(PartitionError, match="not complete yet") as info:
        days.validate("2025-01-04", asset="events")
    assert "'events'" in str(info.value)
    now.now = datetime(2025, 1, 5, tzinfo=UTC)  # 2025-01-04 just completed
    assert days.keys()[-1] == "2025-01-04"
    assert len(days) == 4
    assert days.end is None


def test_open_end_uses_the_time_zone() -> None:
    # 23:30 UTC on Jan 3 is already Jan 4 in Berlin, so Jan 3 is complete there
    now = FakeNow(datetime(2025, 1, 3, 23, 30, tzinfo=UTC))
    assert DailyPartitions("2025-01-01", now=now).keys()[-1] == "2025-01-02"
    berlin = DailyPartitions("2025-01-01", timezone="Europe/Berlin", now=now)
    assert berlin.keys()[-1] == "2025-01-03"


def test_open_end_before_start_has_no_keys() -> None:
    now = FakeNow(datetime(2025, 1, 1, tzinfo=UTC))
    assert DailyPartitions("2025-06-01", now=now).keys() == ()


# -- time windows: clock changes ---------------------------------------------------------


def test_hourly_spring_forward_skips_the_missing_hour() -> None:
    hours = HourlyPartitions("2025-03-30", "2025-03-31", timezone="Europe/Berlin")
    assert len(hours) == 23
    assert "2025-03-30T02:00" not in hours
    with pytest.raises(PartitionError, match="does not exist in time zone 'Europe/Berlin'"):
        hours.validate("2025-03-30T02:00", asset="meter")
    start, end = (moment.astimezone(UTC) for moment in hours.window("2025-03-30T01:00"))
    assert end - start == timedelta(hours=1)
    assert end == datetime(2025, 3, 30, 1, tzinfo=UTC)


def test_hourly_fall_back_repeated_hour_is_one_long_window() -> None:
    hours = HourlyPartitions("2025-10-26", "2025-10-27", timezone="Europe/Berlin")
    assert len(hours) == 24
    start, end = hours.window("2025-10-26T02:00")
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=2)
    # both 02:30s (summer and winter time) fall into the one window
    assert hours.key_for(datetime(2025, 10, 26, 0, 30, tzinfo=UTC)) == "2025-10-26T02:00"
    assert hours.key_for(datetime(2025, 10, 26, 1, 30, tzinfo=UTC)) == "2025-10-26T02:00"


def test_daily_with_midnight_gap_starts_when_clocks_jump() -> None:
    # Santiago moved clocks from 00:00 to 01:00 on 2022-09-11
    days = DailyPartitions("2022-09-10", "2022-09-13", timezone="America/Santiago")
    assert days.keys() == ("2022-09-10", "2022-09-11", "2022-09-12")
    start, end = days.window("2022-09-11")
    assert (start.hour, end.hour) == (1, 0)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)
    assert days.window("2022-09-10")[1] == start


def test_daily_skipped_day_is_not_a_partition() -> None:
    # Samoa skipped 2011-12-30 entirely when it crossed the date line
    days = DailyPartitions("2011-12-28", "2012-01-02", timezone="Pacific/Apia")
    assert days.keys() == ("2011-12-28", "2011-12-29", "2011-12-31", "2012-01-01")
    with pytest.raises(PartitionError, match="does not exist"):
        days.validate("2011-12-30")
    assert days.window("2011-12-29")[1] == days.window("2011-12-31")[0]


# -- time windows: properties ------------------------------------------------------------

KINDS: dict[str, tuple[type[TimeWindowPartitions], int]] = {
    "daily": (DailyPartitions, 40),
    "hourly": (HourlyPartitions, 60),
    "monthly": (MonthlyPartitions, 30),
}


@st.composite
def definitions(draw: st.DrawFn) -> TimeWindowPartitions:
    kind, max_span = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    zone = draw(st.sampled_from(ZONES))
    day = draw(st.dates(min_value=date(1971, 1, 1), max_value=date(2090, 12, 1)))
    if kind is MonthlyPartitions:
        day = day.replace(day=1)
    start = datetime(day.year, day.month, day.day)
    if kind is HourlyPartitions:
        start += timedelta(hours=draw(st.integers(0, 23)))
    span = draw(st.integers(1, max_span))
    end = start
    for _ in range(span):
        end = kind(end, timezone=zone)._next(end)
    return kind(start, end, timezone=zone)


@settings(deadline=None)
@given(definitions())
def test_every_key_validates_and_round_trips(parts: TimeWindowPartitions) -> None:
    keys = parts.keys()
    assert list(keys) == sorted(set(keys))  # sorted and unique
    assert len(parts) == len(keys)
    for key in keys:
        assert parts.validate(key) == key
        assert key in parts
        start, end = parts.window(key)
        assert start < end
        assert start.utcoffset() is not None
        assert parts.key_for(start) == key
        assert parts.key_for(end.astimezone(UTC) - timedelta(seconds=1)) == key
    # the windows tile time without gaps or overlaps
    windows = [tuple(moment.astimezone(UTC) for moment in parts.window(key)) for key in keys]
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert end == start
    if keys:
        assert parts.range(keys[0], keys[-1]) == list(keys)


@settings(deadline=None)
@given(definitions(), st.floats(0, 1, exclude_max=True))
def test_key_for_finds_the_window_holding_an_instant(
    parts: TimeWindowPartitions, where: float
) -> None:
    keys = parts.keys()
    assume(keys)  # a one-hour span inside a clock gap has no keys
    first = parts.window(keys[0])[0].astimezone(UTC)
    last = parts.window(keys[-1])[1].astimezone(UTC)
    instant = min(first + (last - first) * where, last - timedelta(microseconds=1))
    key = parts.key_for(instant)
    start, end = (moment.astimezone(UTC) for moment in parts.window(key))
    assert start <= instant < end


@settings(deadline=None)
@given(definitions(), st.text(max_size=20))
def test_arbitrary_text_is_a_key_or_names_the_asset(parts: TimeWindowPartitions, text: str) -> None:
    try:
        key = parts.validate(text, asset="my_asset")
    except PartitionError as error:
        assert error.asset == "my_asset"
        assert "asset 'my_asset'" in str(error)
        assert text not in parts
    else:
        assert key in parts.keys()


@settings(deadline=None)
@given(definitions())
def test_keys_outside_the_bounds_raise(parts: TimeWindowPartitions) -> None:
    before = parts.start - timedelta(days=40)
    after = parts.end
    assert after is not None
    for outside in (before, after + timedelta(days=40)):
        wall = outside.astimezone(ZoneInfo(parts.timezone)).replace(tzinfo=None)
        key = parts._format(parts._floor(wall))
        with pytest.raises(PartitionError, match="'asset_x'"):
            parts.validate(key, asset="asset_x")


@given(st.lists(st.text(min_size=1), min_size=1, unique=True), st.text())
def test_static_partitions_property(keys: list[str], probe: str) -> None:
    parts = StaticPartitions(keys)
    assert list(parts.keys()) == keys
    for key in keys:
        assert parts.validate(key) == key
    if probe in keys:
        assert probe in parts
    else:
        with pytest.raises(PartitionError, match="'the_asset'"):
            parts.validate(probe, asset="the_asset")


# -- partition_keys ----------------------------------------------------------------------


def test_partition_keys_accepts_every_form() -> None:
    days = DailyPartitions("2025-01-01", "2025-01-03")
    assert partition_keys(days) == ["2025-01-01", "2025-01-02"]
    assert partition_keys(StaticPartitions(["a", "b"])) == ["a", "b"]
    assert partition_keys("2025-01-01") == ["2025-01-01"]
    assert partition_keys(["b", "a", "b"]) == ["b", "a"]
    assert partition_keys(key for key in ("x", "y")) == ["x", "y"]
    assert partition_keys([]) == []
    assert partition_keys(days.range("2025-01-01", "2025-01-02")) == ["2025-01-01", "2025-01-02"]


def test_partition_keys_rejects_bad_input() -> None:
    with pytest.raises(PartitionError, match="must not be empty"):
        partition_keys("")
    with pytest.raises(PartitionError, match="must not be empty"):
        partition_keys(["a", ""])
    with pytest.raises(PartitionError, match="must be a str, not int"):
        partition_keys(["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not int"):
        partition_keys(5)  # type: ignore[arg-type]


def test_custom_definition_satisfies_protocol() -> None:
    class Shards:
        def keys(self) -> list[str]:
            return [f"shard-{i}" for i in range(3)]

        def validate(self, key: str, *, asset: str | None = None) -> str:
            if key not in self.keys():
                raise PartitionError(asset, key, "no such shard")
            return key

        def __contains__(self, key: object) -> bool:
            return key in self.keys()

    shards = Shards()
    assert isinstance(shards, PartitionsDefinition)
    assert partition_keys(shards) == ["shard-0", "shard-1", "shard-2"]
