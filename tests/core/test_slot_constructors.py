"""Slot constructors build the same objects as the dataclasses' own constructors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstone._core.events import AssetStarted, AssetSucceeded
from flowstone._core.protocols import IOContext
from flowstone._core.records import MaterializationRecord, Status
from flowstone._core.slot_constructors import slot_constructor

_text = st.text(max_size=12)
_maybe_text = st.none() | _text
_times = st.none() | st.datetimes(timezones=st.just(UTC))
_mapping = st.dictionaries(_text, st.integers() | _text, max_size=3)

_records = st.fixed_dictionaries(
    {
        "run_id": _text,
        "asset": _text,
        "partition": _maybe_text,
        "status": st.sampled_from(Status),
    },
    optional={
        "attempts": st.integers(0, 9),
        "started_at": _times,
        "ended_at": _times,
        "error": _maybe_text,
        "error_type": _maybe_text,
        "metadata": _mapping,
        "code_version": _maybe_text,
        "data_version": _maybe_text,
        "input_versions": st.dictionaries(_text, _text, max_size=3),
        "io_manager": _maybe_text,
        "reused": st.booleans(),
    },
)


@given(_records)
def test_a_record_is_the_one_its_constructor_builds(fields: dict[str, Any]) -> None:
    built = slot_constructor(MaterializationRecord)(**fields)
    expected = MaterializationRecord(**fields)
    assert type(built) is MaterializationRecord
    assert built == expected
    assert repr(built) == repr(expected)


@given(
    st.fixed_dictionaries(
        {"run_id": _text, "asset": _text},
        optional={
            "partition": _maybe_text,
            "timestamp": st.floats(0, 2e9),
            "duration": st.floats(0, 1e3),
            "reused": st.booleans(),
            "metadata": _mapping,
            "data_version": _maybe_text,
        },
    )
)
def test_an_event_is_the_one_its_constructor_builds(fields: dict[str, Any]) -> None:
    built = slot_constructor(AssetSucceeded)(**fields)
    expected = AssetSucceeded(**fields)
    if "timestamp" not in fields:  # the default factory ran for each (time.time)
        assert abs(built.timestamp - expected.timestamp) < 60
        built = dataclasses.replace(built, timestamp=expected.timestamp)
    assert built == expected


def test_defaults_and_default_factories_are_those_of_the_class() -> None:
    started = slot_constructor(AssetStarted)(run_id="r", asset="a")
    assert (started.partition, started.attempt, started.kind) == (None, 1, "asset")
    first = slot_constructor(IOContext)(asset="a")
    second = slot_constructor(IOContext)(asset="a")
    assert first == IOContext("a")
    assert first.metadata == {} and first.metadata is not second.metadata  # a new dict each
    record = slot_constructor(MaterializationRecord)(
        run_id="r", asset="a", partition=None, status=Status.RUNNING
    )
    assert record == MaterializationRecord("r", "a", None, Status.RUNNING)


def test_what_it_builds_stays_frozen() -> None:
    record = slot_constructor(MaterializationRecord)(
        run_id="r", asset="a", partition=None, status=Status.SUCCEEDED, started_at=datetime.now(UTC)
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.asset = "b"  # type: ignore[misc]  # frozen: the point of the test
    assert record.replace(asset="b").asset == "b"


def test_arguments_are_keywords_and_the_required_ones_are_required() -> None:
    build = slot_constructor(IOContext)
    with pytest.raises(TypeError):
        build("a")
    with pytest.raises(TypeError):
        build(partition="p")
    with pytest.raises(TypeError):
        build(asset="a", table="t")


@dataclass
class _NoSlots:
    x: int


@dataclass(slots=True)
class _PostInit:
    x: int

    def __post_init__(self) -> None:
        self.x += 1


@dataclass(slots=True)
class _NotInInit:
    x: int
    y: list[int] = field(default_factory=list, init=False)


@dataclass(slots=True)
class _WithInitVar:
    x: int
    scale: dataclasses.InitVar[int] = 1


@pytest.mark.parametrize("cls", [_NoSlots, _PostInit, _NotInInit, _WithInitVar, dict])
def test_classes_it_cannot_build_like_their_constructor_are_refused(cls: type[Any]) -> None:
    with pytest.raises(TypeError, match=cls.__name__):
        slot_constructor(cls)
