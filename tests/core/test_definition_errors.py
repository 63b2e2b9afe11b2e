"""Bad definition inputs fail when they are given, with a typed error naming the option."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs


def work() -> int:
    return 1


_not_str = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.lists(st.text(min_size=1), min_size=1, max_size=2),
    st.binary(min_size=1, max_size=3),
)
_not_mapping = st.one_of(st.integers(), st.floats(), st.text(), st.lists(st.integers()))
_bad_timeouts = st.one_of(
    st.floats(max_value=0),
    st.sampled_from([math.nan, math.inf, -math.inf, True, False]),
    st.integers(max_value=0),
    st.text(),
    st.lists(st.integers()),
)

BAD_OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(_not_str, st.just("")),
    "code_version": st.one_of(_not_str, st.just("")),
    "io_manager": st.one_of(_not_str, st.just("")),
    "description": _not_str,
    "timeout": _bad_timeouts,
    "partitions": st.one_of(st.text(), st.integers(), st.lists(st.text())),
    "metadata": st.one_of(_not_mapping, st.dictionaries(st.integers(), st.integers(), min_size=1)),
    "tags": st.one_of(
        _not_mapping,
        st.dictionaries(st.text(), st.integers(), min_size=1),
        st.dictionaries(st.integers(), st.text(), min_size=1),
    ),
    "deps": st.one_of(
        st.integers(), st.floats(), st.binary(min_size=1), st.lists(st.integers(), min_size=1)
    ),
    "optional_deps": st.one_of(
        st.integers(), st.floats(), st.binary(min_size=1), st.lists(st.integers(), min_size=1)
    ),
    "retry": st.one_of(st.text(), st.floats(), st.integers(max_value=0)),
}


@pytest.mark.parametrize("option", sorted(BAD_OPTIONS))
def test_a_bad_asset_option_is_a_definition_error_naming_it(option: str) -> None:
    @given(BAD_OPTIONS[option])
    def check(value: Any) -> None:
        with pytest.raises(fs.InvalidAssetError, match=option):
            fs.asset(**{option: value})(work)

    check()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"name": 3.5}, "name= must be a non-empty str"),
        ({"code_version": 7}, "code_version="),
        ({"timeout": math.nan}, "timeout"),
        ({"partitions": "daily"}, "partitions= must be a partitions definition"),
        ({"io_manager": ["memory"]}, "io_manager="),
        ({"metadata": ["rows"]}, "metadata= must be a mapping"),
        ({"tags": {"team": 1}}, "tags= values must be str"),
        ({"deps": 3}, "deps="),
    ],
)
def test_the_reported_bad_options(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(fs.DefinitionError, match=fragment) as info:
        fs.asset(**options)(work)
    assert info.value.asset == "work"  # type: ignore[attr-defined]


def test_a_single_optional_dependency_name_is_one_name() -> None:
    @fs.asset(optional_deps="maybe")
    def tolerant(maybe: int | None = None) -> int:
        return maybe or 0

    assert tolerant.optional == frozenset({"maybe"})


@pytest.mark.parametrize("assets", [[0], 0, "numbers", [work]])
def test_pipeline_of_something_else_is_a_definition_error(assets: Any) -> None:
    with pytest.raises(fs.DefinitionError, match="Pipeline takes assets"):
        fs.Pipeline(assets)


def test_pipeline_name_must_be_a_string() -> None:
    with pytest.raises(fs.DefinitionError, match="name"):
        fs.Pipeline([fs.asset(work)], name=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("select", [0, [0], 1.5, [None], b"work"])
async def test_bad_select_is_a_configuration_error(
    flowstone_runtime: fs.Runtime, select: Any
) -> None:
    pipeline = fs.Pipeline([fs.asset(work)])
    with pytest.raises(fs.ConfigurationError, match="select="):
        await flowstone_runtime.materialize(pipeline, select)


def test_a_postgres_dsn_as_store_points_to_postgres_store() -> None:
    with pytest.raises(fs.ConfigurationError, match=r"store=PostgresStore\(dsn\)"):
        fs.Runtime(store="postgresql://postgres@localhost/db")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"store": 42}, "store= must be a MaterializationStore"),
        ({"store": "memory"}, "store= takes a store object"),
        ({"gate_store": object()}, "gate_store="),
        ({"io_managers": ["memory"]}, "io_managers= must be a mapping"),
        ({"io_managers": {"x": None}}, r"io_managers\['x'\]"),
        ({"coordinators": {3: object()}}, "coordinators= keys"),
        ({"resources": ["shop"]}, "resources= must be a mapping"),
        ({"resources": {"not an identifier": 1}}, "resources= keys"),
        ({"event_sinks": fs.LoggingSink()}, "event_sinks="),
        ({"event_sinks": [print]}, "event_sinks= must hold event sinks"),
        ({"default_io_manager": 3}, "default_io_manager="),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"max_concurrent": 2.5}, "max_concurrent"),
        ({"plugins": "postgres"}, "plugins="),
    ],
)
def test_bad_runtime_arguments_are_configuration_errors(
    options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(fs.ConfigurationError, match=fragment):
        fs.Runtime(**options)
