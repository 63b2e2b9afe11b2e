"""The partition key encoding: reversible, path-safe, and what hive readers decode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.parquet import decode_segment, encode_segment
from flowstone.ext.parquet._layout import parse_value_path, value_path

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@given(st.text())
def test_every_key_round_trips_through_its_segment(key: str) -> None:
    segment = encode_segment(key)
    assert decode_segment(segment) == key
    assert set(segment) <= UNRESERVED | set("%0123456789ABCDEF")
    assert "/" not in segment and "\\" not in segment


@given(st.text(), st.text())
def test_different_keys_get_different_segments(a: str, b: str) -> None:
    if a != b:
        assert encode_segment(a) != encode_segment(b)


@given(st.text(max_size=40))
def test_a_value_path_parses_back_to_its_key(key: str) -> None:
    path = value_path("orders", key)
    directory, _, relative = path.partition("/")
    assert directory == "orders"
    assert parse_value_path(relative) == (True, key)


def test_dates_stay_readable_and_the_rest_is_encoded() -> None:
    assert value_path("orders", "2025-01-02") == "orders/partition=2025-01-02/part-0.parquet"
    assert value_path("orders", "eu/west") == "orders/partition=eu%2Fwest/part-0.parquet"
    assert value_path("orders", "..") == "orders/partition=../part-0.parquet"
    assert value_path("orders", "caf\u00e9") == "orders/partition=caf%C3%A9/part-0.parquet"
    assert value_path("orders", None) == "orders/data.parquet"
    assert value_path("a/b", "x") == "a%2Fb/partition=x/part-0.parquet"


def test_a_key_too_long_for_a_path_is_refused() -> None:
    with pytest.raises(fs.StorageError, match=r"partition 'xxx.*over the 255"):
        value_path("orders", "x" * 250)


def test_a_key_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(fs.StorageError, match=r"asset 'orders' partition .*cannot be stored"):
        value_path("orders", "\ud800")
