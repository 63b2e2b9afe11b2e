"""The built-in check helpers (``flowstone.checks``), on lists of dicts and Arrow tables."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs
from flowstone.checks import no_nulls, row_count, unique

ROWS = [
    {"id": 1, "email": "a@x", "total": 5},
    {"id": 2, "email": None, "total": 3},
    {"id": 2, "total": 1},
]


def test_row_count_bounds() -> None:
    assert row_count(ROWS, min=1, max=3) == fs.CheckResult(
        passed=True, metadata={"rows": 3, "min": 1, "max": 3}
    )
    assert not row_count(ROWS, min=4).passed
    assert not row_count(ROWS, max=2).passed
    assert row_count([]).passed and row_count([]).metadata == {"rows": 0}
    with pytest.raises(ValueError, match="min=3 is greater than max=1"):
        row_count(ROWS, min=3, max=1)


def test_no_nulls_counts_none_and_missing_keys() -> None:
    result = no_nulls(ROWS, ["id", "email"])
    assert not result.passed and result.metadata == {"nulls": {"email": 2}}
    assert no_nulls(ROWS, "id") == fs.CheckResult(passed=True, metadata={"nulls": {}})
    with pytest.raises(ValueError, match="needs column names"):
        no_nulls(ROWS, [])


def test_unique_reports_duplicates() -> None:
    result = unique(ROWS, "id")
    assert not result.passed and result.metadata == {"duplicates": 1, "examples": [2]}
    assert unique(ROWS, "total").passed
    assert unique([{"k": [1]}, {"k": [1]}], "k").metadata == {
        "duplicates": 1,
        "examples": ["[1]"],
    }


def test_values_that_are_not_tables_or_rows_are_type_errors() -> None:
    with pytest.raises(TypeError, match="not int"):
        row_count(3)
    with pytest.raises(TypeError, match="row 1 is str"):
        no_nulls([{"a": 1}, "b"], "a")
    with pytest.raises(TypeError, match="not str"):
        unique("abc", "a")


@given(st.lists(st.fixed_dictionaries({}, optional={"k": st.none() | st.integers(0, 5)})))
def test_unique_and_no_nulls_agree_with_brute_force(rows: list[dict[str, Any]]) -> None:
    present = [r["k"] for r in rows if r.get("k") is not None]
    duplicates = len(present) - len(set(present))
    assert unique(rows, "k").metadata["duplicates"] == duplicates
    assert unique(rows, "k").passed == (duplicates == 0)
    nulls = sum(1 for r in rows if r.get("k") is None)
    assert no_nulls(rows, "k").passed == (nulls == 0)


def test_arrow_tables_give_the_same_answers() -> None:
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"id": [1, 2, 2], "email": ["a@x", None, None], "total": [5, 3, 1]})
    assert row_count(table, min=3, max=3).passed
    assert row_count(table.to_batches()[0], max=2).metadata == {"rows": 3, "max": 2}
    assert no_nulls(table, ["id", "email"]).metadata == {"nulls": {"email": 2}}
    assert unique(table, "id").metadata == {"duplicates": 1, "examples": [2]}
    assert unique(table, "email").passed  # nulls are ignored
    with pytest.raises(KeyError, match="no column 'nope'"):
        no_nulls(table, "nope")


async def test_a_helper_inside_a_check(flowstone_runtime: fs.Runtime) -> None:
    @fs.asset
    def people() -> list[dict[str, Any]]:
        return ROWS

    @fs.check(asset="people", severity="error")
    def ids_unique(people: list[dict[str, Any]]) -> fs.CheckResult:
        return unique(people, "id")

    result = await flowstone_runtime.materialize([people, ids_unique], raise_on_error=False)
    (record,) = result.checks["people"]
    assert not record.passed and record.metadata == {"duplicates": 1, "examples": [2]}


def test_importing_the_helpers_does_not_import_pyarrow() -> None:
    script = (
        "import sys\n"
        "import flowstone as fs\n"
        "from flowstone.checks import no_nulls, row_count, unique\n"
        "rows = [{'a': 1}, {'a': None}]\n"
        "assert not no_nulls(rows, 'a').passed and row_count(rows, min=2).passed\n"
        "assert unique(rows, 'a').passed\n"
        "assert 'pyarrow' not in sys.modules, 'the helpers imported pyarrow'\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
