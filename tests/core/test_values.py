"""The durable value rules, and the in-memory IO manager's strict mode that applies them."""

from __future__ import annotations

import re
import sys
from collections import namedtuple
from typing import Any

import pytest

import flowstone as fs
from flowstone.protocols import IOContext, check_json, check_storable, restore_tuples, tuple_paths
from flowstone.testing import assert_failed, assert_succeeded
from value_samples import cyclic_dict, cyclic_list, nested


class Opaque:
    pass


shared = [1, 2]
Point = namedtuple("Point", "x y")

STORABLE = [
    pytest.param({"a": [1, 2.5, None, True, "x"]}, id="json"),
    pytest.param((1, (2, [3])), id="tuples"),
    pytest.param({"nul": "a\x00b", "k\x00": 1e300}, id="nul-and-big-float"),
    pytest.param({"é": "日本語 😀"}, id="unicode"),
    pytest.param([shared, shared, {"again": shared}], id="shared-not-cyclic"),
    pytest.param(10**4000, id="long-int"),
    pytest.param(nested(500), id="500-deep"),
    pytest.param(b"\x00bytes", id="bytes"),
    pytest.param(bytearray(b"xy"), id="bytearray"),
]

REFUSED = [
    pytest.param({1, 2}, "value is a set", id="set"),
    pytest.param({1: "x"}, "non-string key 1", id="int-key"),
    pytest.param([Opaque()], r"value\[0\] is a Opaque", id="object"),
    pytest.param({"x": float("nan")}, r"value\['x'\] is nan", id="nan"),
    pytest.param("\ud800", "surrogate code point U\\+D800", id="lone-surrogate"),
    pytest.param({"\udc00": 1}, "key holding the surrogate code point U\\+DC00", id="key"),
    pytest.param([{"a": ["x\udfff"]}], r"value\[0\]\['a'\]\[0\] is a string", id="deep-str"),
    pytest.param(10**5000, "int of more than 4300 digits", id="huge-int"),
    pytest.param(nested(501), "nests more than 500 levels deep", id="501-deep"),
    pytest.param(nested(5000), "nests more than 500 levels deep", id="5000-deep"),
    pytest.param(cyclic_list(), r"value\[1\]\['k'\]\[0\] contains itself", id="cyclic-list"),
    pytest.param(cyclic_dict(), r"value\['self'\] contains itself", id="cyclic-dict"),
]


@pytest.mark.parametrize("value", STORABLE)
async def test_strict_memory_stores_what_a_durable_store_keeps(value: Any) -> None:
    io = fs.MemoryIOManager(strict=True)
    await io.store(IOContext("a", "p"), value)
    assert await io.load(IOContext("a", "p")) is value


@pytest.mark.parametrize(("value", "reason"), REFUSED)
async def test_strict_memory_refuses_what_a_durable_store_would_not_keep(
    value: Any, reason: str
) -> None:
    io = fs.MemoryIOManager(strict=True)
    with pytest.raises(fs.StorageError, match="^asset 'a' partition 'p': ") as failed:
        await io.store(IOContext("a", "p"), value)
    assert re.search(reason, str(failed.value)), str(failed.value)
    assert not await io.exists(IOContext("a", "p"))


@pytest.mark.parametrize(("value", "reason"), REFUSED)
async def test_the_default_memory_io_manager_keeps_any_object(value: Any, reason: str) -> None:
    io = fs.MemoryIOManager()
    await io.store(IOContext("a"), value)
    assert await io.load(IOContext("a")) is value


async def test_strict_mode_fails_the_asset_naming_it() -> None:
    @fs.asset
    async def tags() -> set[str]:
        return {"a", "b"}

    @fs.asset
    async def fine() -> tuple[int, int]:
        return (1, 2)

    strict = fs.MemoryIOManager(strict=True)
    async with fs.Runtime(io_managers={"memory": strict}) as runtime:
        result = await runtime.materialize([tags, fine], raise_on_error=False)
    error = assert_failed(result, "tags", fs.StorageError).__cause__
    assert str(error).startswith("asset 'tags': ") and "value is a set" in str(error)
    assert_succeeded(result, "fine", value=(1, 2))


async def test_the_pytest_fixture_is_strict(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    async def cyclic() -> list[Any]:
        return cyclic_list()

    result = await flowstone_runtime.materialize([cyclic], raise_on_error=False)
    assert_failed(result, "cyclic", fs.StorageError)
    memory = flowstone_runtime.io_managers.get("memory")
    assert isinstance(memory, fs.MemoryIOManager)
    memory.strict = False
    assert_succeeded(await flowstone_runtime.materialize([cyclic]), "cyclic")


def test_arrow_tables_are_storable_without_importing_pyarrow() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": [1, 2]})
    check_storable(table, "t")
    check_storable(table.to_batches()[0], "t")
    with pytest.raises(fs.StorageError, match="asset 't'"):
        check_storable(pa.array([1, 2]), "t")


def test_check_json_says_how_to_keep_a_value() -> None:
    assert check_json({"a": [1, "x"]}) == fs.protocols.JsonCheck(None)
    assert check_json(["a\x00"]).exact and check_json({"f": 2e16}).exact
    assert check_json([1, (2,)]).has_tuples and not check_json([1, [2]]).has_tuples
    assert check_json({1, 2}).problem == "value is a set"


def test_tuples_are_restored_from_their_paths() -> None:
    value = {"t": (1, (2, [3, (4,)])), "l": [(), [5]], "p": Point(1, 2)}
    paths = tuple_paths(value)
    as_json: Any = {"t": [1, [2, [3, [4]]]], "l": [[], [5]], "p": [1, 2]}
    restored = restore_tuples(as_json, paths)
    assert restored == {"t": (1, (2, [3, (4,)])), "l": [(), [5]], "p": (1, 2)}
    assert type(restored["t"][1][1]) is list and type(restored["p"]) is tuple
    assert restore_tuples([[1], 2], tuple_paths(((1,), 2))) == ((1,), 2)


def test_the_int_limit_follows_python() -> None:
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        assert check_json(10**5000).problem is None
        assert "PostgreSQL numbers hold at most 131072" in str(check_json(10**131072).problem)
    finally:
        sys.set_int_max_str_digits(limit)
