"""Which asset values a durable IO manager can store, and how they come back.

One set of rules, shared by the ``postgres`` IO manager (which stores by them) and the
in-memory IO manager's strict mode (which checks by them, so tests catch in memory what
PostgreSQL would refuse). A value is storable when it is one of:

- JSON data: ``None``, bools, ints, finite floats, strings, lists, tuples and dicts with
  string keys, nested at most :data:`MAX_DEPTH` deep and holding no container inside itself.
  Strings (and keys) must be valid Unicode text: a surrogate code point such as
  ``"\\ud800"`` is refused, as PostgreSQL's text and ``jsonb`` refuse it. Ints may have at
  most :data:`MAX_INT_DIGITS` digits (and no more than Python's own limit for turning an
  int into text, :func:`sys.get_int_max_str_digits`). Tuples load back as tuples, lists as
  lists; a subclass of one of these types loads back as the base type;
- ``bytes`` (``bytearray`` and ``memoryview`` load back as ``bytes``);
- a ``pyarrow.Table`` or ``pyarrow.RecordBatch`` (recognised without importing pyarrow).

Anything else (a set, a dict with an int key, a dataclass, ...) is not storable, unless the
IO manager is told it may pickle. This module never imports an optional dependency.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from typing import Any, Final

from .errors import StorageError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "JsonCheck",
    "check_json",
    "check_storable",
    "is_arrow_table",
    "restore_tuples",
    "tuple_paths",
]

#: How deep JSON data may nest (``[[...]]`` counts one level per list). Python's ``json``
#: fails somewhat below 1,000 levels; this leaves room for the caller's own stack.
MAX_DEPTH: Final = 500

#: The most digits an int may have: what PostgreSQL's ``numeric`` (inside ``jsonb``)
#: holds before the decimal point.
MAX_INT_DIGITS: Final = 131_072

#: Ints with at most this many bits always fit (Python never limits text below 640 digits).
_SMALL_INT_BITS: Final = 2_000

#: Floats this large ``jsonb`` would print as integers, so they need exact JSON text.
_EXACT_FLOAT: Final = 1e16

_EXACT: Final = 1  # jsonb would alter the value (a NUL character, a float >= 1e16)
_TUPLES: Final = 2  # the value holds a tuple

#: A path inside a value: dict keys and list indices, from the outside in.
Path = list[str | int]


@dataclass(frozen=True, slots=True)
class JsonCheck:
    """What :func:`check_json` found.

    :param problem: why the value is not storable as JSON (naming where in the value), or
        ``None`` when it is
    :param exact: ``jsonb`` would change it (a NUL character, a float of 1e16 or more), so
        it must be kept as exact JSON text
    :param has_tuples: it holds a tuple (see :func:`tuple_paths`)
    """

    problem: str | None
    exact: bool = False
    has_tuples: bool = False


class _Problem(Exception):
    """Raised inside the walk; each container on the way out adds its key to ``path``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: Path = []


def check_json(value: Any) -> JsonCheck:
    """Check ``value`` against the JSON rules (see the module docstring) in one walk.

    Never raises for a bad value: a cycle, too deep a nesting, a huge int or a surrogate
    come back as :attr:`JsonCheck.problem`.
    """
    try:
        flags = _walk(value, 0, set())
    except _Problem as problem:
        return JsonCheck(f"{_path_text(problem.path)} {problem.reason}")
    except RecursionError:  # only when called with the stack already nearly full
        return JsonCheck("value nests too deeply to check here")
    return JsonCheck(None, bool(flags & _EXACT), bool(flags & _TUPLES))


def is_arrow_table(value: Any) -> bool:
    """Whether ``value`` is a ``pyarrow.Table`` or ``pyarrow.RecordBatch`` (without importing
    pyarrow)."""
    kind = type(value)
    return kind.__module__.startswith("pyarrow") and kind.__name__ in ("Table", "RecordBatch")


def check_storable(value: Any, asset: str, partition: str | None = None) -> None:
    """Raise unless a durable IO manager (without pickle) stores ``value`` so that it loads
    back equal, with the same container types.

    :param asset: the asset (for the message)
    :param partition: its partition key, if any (for the message)
    :raises StorageError: the value is not storable (naming the asset, partition and why)
    """
    if isinstance(value, (bytes, bytearray, memoryview)) or is_arrow_table(value):
        return
    problem = check_json(value).problem
    if problem is not None:
        raise StorageError(
            f"{_location(asset, partition)}: a durable IO manager cannot store this value ({problem}); return "
            "JSON-able data (strings, numbers, bools, None, lists, tuples, dicts with string "
            "keys), bytes or an Arrow table"
        )


def _location(asset: str, partition: str | None) -> str:
    """``asset 'a' partition 'p'`` (or ``asset 'a'``), for messages."""
    text = f"asset {asset!r}"
    return text if partition is None else f"{text} partition {partition!r}"


def tuple_paths(value: Any) -> list[Path]:
    """The paths of the tuples in ``value`` (checked by :func:`check_json`), inner ones first,
    so that :func:`restore_tuples` can turn them back from lists."""
    found: list[Path] = []
    _collect_tuples(value, [], found)
    return found


def restore_tuples(value: Any, paths: list[Path]) -> Any:
    """``value`` (loaded from JSON) with the lists at ``paths`` turned back into tuples.

    :param paths: as :func:`tuple_paths` gave them (inner ones first)
    """
    for path in paths:
        if not path:
            value = tuple(value)
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = tuple(parent[path[-1]])
    return value


# -- the walk ----------------------------------------------------------------------------


def _walk(item: Any, depth: int, active: set[int]) -> int:
    """The flags of ``item``; ``active`` holds the ids of the containers being walked."""
    kind = type(item)
    if kind is dict or (kind is not list and kind is not tuple and isinstance(item, dict)):
        children: Any = item.items()
        flags = _dict_keys(item)
    elif kind is list or kind is tuple or isinstance(item, (list, tuple)):
        children = enumerate(item)
        flags = _TUPLES if isinstance(item, tuple) else 0
    else:
        return _leaf(item)
    if depth >= MAX_DEPTH:
        raise _Problem(f"nests more than {MAX_DEPTH} levels deep")
    marker = id(item)
    if marker in active:
        raise _Problem("contains itself (a reference cycle), which JSON cannot hold")
    active.add(marker)
    for key, child in children:
        try:
            ckind = type(child)
            if ckind is str:
                if not child.isascii() or "\x00" in child:
                    flags |= _string(child, "string")
            elif ckind is int:
                if child.bit_length() > _SMALL_INT_BITS:
                    _big_int(child)
            elif ckind is float:
                if not math.isfinite(child):
                    raise _Problem(f"is {child!r}, which JSON cannot hold")
                if abs(child) >= _EXACT_FLOAT:
                    flags |= _EXACT
            elif child is not None and ckind is not bool:
                flags |= _walk(child, depth + 1, active)
        except _Problem as problem:
            problem.path.append(key)
            raise
    active.discard(marker)
    return flags


def _dict_keys(mapping: dict[Any, Any]) -> int:
    """The flags of a dict's keys (raising at a key that is not a valid string)."""
    flags = 0
    for key in mapping:
        if type(key) is not str and not isinstance(key, str):
            raise _Problem(
                f"has a non-string key {key!r}; JSON keys are strings, so it would not "
                "load back the same"
            )
        if not key.isascii() or "\x00" in key:
            flags |= _string(key, "key")
    return flags


def _leaf(item: Any) -> int:
    """The flags of a value that is not a container (raising if it is no JSON leaf)."""
    if item is None or isinstance(item, bool):
        return 0
    if isinstance(item, str):
        return _string(item, "string") if not item.isascii() or "\x00" in item else 0
    if isinstance(item, int):
        if item.bit_length() > _SMALL_INT_BITS:
            _big_int(item)
        return 0
    if isinstance(item, float):
        if not math.isfinite(item):
            raise _Problem(f"is {item!r}, which JSON cannot hold")
        return _EXACT if abs(item) >= _EXACT_FLOAT else 0
    raise _Problem(f"is a {type(item).__qualname__}")


def _string(text: str, what: str) -> int:
    """The flags of a string that is not plain ASCII or holds a NUL character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        point = ord(text[exc.start])
        raise _Problem(
            f"is a {what} holding the surrogate code point U+{point:04X}, which is not valid "
            "Unicode text (PostgreSQL refuses it)"
        ) from None
    return _EXACT if "\x00" in text else 0


def _big_int(number: int) -> None:
    """Raise unless ``number`` can be written as JSON and read back."""
    limit = sys.get_int_max_str_digits()
    if limit and limit < MAX_INT_DIGITS:
        if abs(number) >= _power_of_ten(limit):
            raise _Problem(
                f"is an int of more than {limit} digits, more than Python turns into text "
                "(sys.get_int_max_str_digits())"
            )
    elif abs(number) >= _power_of_ten(MAX_INT_DIGITS):
        raise _Problem(
            f"is an int of more than {MAX_INT_DIGITS} digits; PostgreSQL numbers hold at "
            f"most {MAX_INT_DIGITS}"
        )


@functools.lru_cache(maxsize=4)
def _power_of_ten(digits: int) -> int:
    """The smallest int with ``digits + 1`` digits."""
    power: int = 10**digits
    return power


def _path_text(path: Path) -> str:
    """``value[0]['a']`` for the path collected inside out."""
    return "value" + "".join(f"[{key!r}]" for key in reversed(path))


def _collect_tuples(item: Any, path: Path, found: list[Path]) -> None:
    if isinstance(item, (list, tuple)):
        for index, child in enumerate(item):
            if isinstance(child, (list, tuple, dict)):
                _collect_tuples(child, [*path, index], found)
        if isinstance(item, tuple):
            found.append(path)
    elif isinstance(item, dict):
        for key, child in item.items():
            if isinstance(child, (list, tuple, dict)):
                _collect_tuples(child, [*path, key], found)
