"""Built-in helpers for common checks, on Arrow tables and on lists of dicts.

Each takes the value and returns a :class:`~flowstone.CheckResult`, so a check is one line::

    from flowstone.checks import no_nulls

    @fs.check(asset="orders", severity="error")
    def ids_present(orders: list[dict]) -> fs.CheckResult:
        return no_nulls(orders, ["id", "total"])

pyarrow is imported only when the value is an Arrow table (a ``pyarrow.Table`` or
``RecordBatch``); lists of dicts need nothing more than the standard library. In a list of
dicts a missing key counts as a null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .checks import CheckResult

__all__ = ["no_nulls", "row_count", "unique"]

#: How many offending values ``unique`` shows in its metadata.
_EXAMPLES = 5


def _is_arrow(value: object) -> bool:
    """Whether ``value`` is an Arrow table or record batch (without importing pyarrow)."""
    return type(value).__module__.startswith("pyarrow") and hasattr(value, "column_names")


def _rows(value: object, helper: str) -> Sequence[Mapping[str, Any]]:
    """``value`` as a sequence of rows, or a ``TypeError`` naming the helper."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for index, row in enumerate(value):
            if not isinstance(row, Mapping):
                raise TypeError(
                    f"{helper}() takes an Arrow table or a list of dicts; "
                    f"row {index} is {type(row).__name__}"
                )
        return value
    raise TypeError(
        f"{helper}() takes an Arrow table or a list of dicts, not {type(value).__name__}"
    )


def _arrow_column(table: Any, column: str, helper: str) -> Any:
    if column not in table.column_names:
        raise KeyError(f"{helper}(): the table has no column {column!r}")
    return table.column(column)


def _columns(columns: str | Sequence[str], helper: str) -> list[str]:
    names = [columns] if isinstance(columns, str) else list(columns)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ValueError(f"{helper}() needs column names, got {columns!r}")
    return names


def row_count(value: Any, *, min: int | None = None, max: int | None = None) -> CheckResult:
    """Whether the number of rows is within ``[min, max]`` (each bound optional).

    :return: passed when ``min <= rows <= max``; metadata ``{"rows": n}`` and the bounds
    :raises TypeError: the value is neither an Arrow table nor a list of dicts
    :raises ValueError: ``min`` is greater than ``max``
    """
    if min is not None and max is not None and min > max:
        raise ValueError(f"row_count(): min={min} is greater than max={max}")
    rows = int(value.num_rows) if _is_arrow(value) else len(_rows(value, "row_count"))
    passed = (min is None or rows >= min) and (max is None or rows <= max)
    metadata: dict[str, Any] = {"rows": rows}
    if min is not None:
        metadata["min"] = min
    if max is not None:
        metadata["max"] = max
    return CheckResult(passed=passed, metadata=metadata)


def no_nulls(value: Any, columns: str | Sequence[str]) -> CheckResult:
    """Whether no row has a null (``None``, or a missing key) in any of ``columns``.

    :return: passed when there is none; metadata ``{"nulls": {column: count}}`` for each
        column with nulls
    :raises KeyError: an Arrow table has no such column
    :raises TypeError: the value is neither an Arrow table nor a list of dicts
    """
    names = _columns(columns, "no_nulls")
    nulls: dict[str, int] = {}
    if _is_arrow(value):
        for name in names:
            count = int(_arrow_column(value, name, "no_nulls").null_count)
            if count:
                nulls[name] = count
    else:
        rows = _rows(value, "no_nulls")
        for name in names:
            count = sum(1 for row in rows if row.get(name) is None)
            if count:
                nulls[name] = count
    return CheckResult(passed=not nulls, metadata={"nulls": nulls})


def unique(value: Any, column: str) -> CheckResult:
    """Whether no two rows share a value of ``column`` (nulls are ignored).

    :return: passed when the values are unique; metadata ``{"duplicates": n}`` (rows beyond
        the first of each value) and a few of the repeated values as ``"examples"``
    :raises KeyError: an Arrow table has no such column
    :raises TypeError: the value is neither an Arrow table nor a list of dicts
    """
    (name,) = _columns(column, "unique")
    if _is_arrow(value):
        values = _arrow_column(value, name, "unique").drop_null().to_pylist()
    else:
        values = [row.get(name) for row in _rows(value, "unique")]
        values = [v for v in values if v is not None]
    seen: set[Any] = set()
    repeated: dict[Any, None] = {}
    duplicates = 0
    for item in values:
        key = _hashable(item)
        if key in seen:
            duplicates += 1
            repeated.setdefault(key, None)
        else:
            seen.add(key)
    examples = [_shown(v) for v in list(repeated)[:_EXAMPLES]]
    metadata: dict[str, Any] = {"duplicates": duplicates}
    if examples:
        metadata["examples"] = examples
    return CheckResult(passed=not duplicates, metadata=metadata)


def _hashable(item: Any) -> Any:
    """``item`` as a set member: lists and dicts (not hashable) by their repr."""
    try:
        hash(item)
    except TypeError:
        return repr(item)
    return item


def _shown(item: Any) -> Any:
    """A JSON-able form of a repeated value for the metadata."""
    return item if isinstance(item, str | int | float | bool) else repr(item)
