"""How scatter items and item results are kept in their rows: JSON, exact JSON text, or pickle.

JSON-able values (``None``, bools, numbers, strings, lists, tuples, dicts with string keys)
go to a ``jsonb`` column and load back as JSON gives them (tuples as lists). The few JSON
values ``jsonb`` would change (strings with NUL characters, floats of 1e16 or more) are kept
byte-exact in the ``*_raw`` column as ``b"J" + JSON text``. Anything else is refused with an
:class:`Unstorable` that says what is wrong, unless pickling was opted into: then it is kept
as ``b"P" + pickle`` (loading a pickle runs code, so only for data you trust). So are values
PostgreSQL or JSON would refuse later: strings with lone surrogates, ints too long to
print, values nested more than :data:`MAX_DEPTH` deep (or holding themselves): a value is
checked on its own, before it joins a batch of rows, so that it fails alone.

Results compressed (:func:`compress_result`, at or above a size threshold) are kept in the
raw column as ``b"Z" + zlib(raw)`` or ``b"S" + zstd(raw)``, where ``raw`` is the tagged
form above (a JSON result as ``b"J" + JSON text``), so the tag says how to read them back.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from typing import TYPE_CHECKING, Any

from flowstone import StorageError
from flowstone.protocols import compress, decompress

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

__all__ = [
    "MAX_DEPTH",
    "MAX_PLAIN_INT",
    "Encoded",
    "Unstorable",
    "compress_result",
    "decode",
    "decode_results",
    "encode",
    "has_surrogate",
    "is_plain",
]

#: ``(json text for the jsonb column, bytes for the raw column)``; one of them is ``None``.
Encoded = tuple[str | None, bytes | None]

_JSON = b"J"
_PICKLE = b"P"
#: The tag of each compressed form, and the codec each tag names.
_COMPRESSED_TAG = {"zlib": b"Z", "zstd": b"S"}
_CODEC_OF_TAG = {tag: codec for codec, tag in _COMPRESSED_TAG.items()}
_SCALARS = (type(None), bool, int)
_BIG_FLOAT = 1e16
_dumps = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_loads = json.loads
#: Containers nest at most this deep in a stored value (JSON parsers recurse).
MAX_DEPTH = 500
#: Ints below this (in absolute value) always print; larger ones are checked.
MAX_PLAIN_INT = 10**4000
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate, which UTF-8 (and PostgreSQL) cannot hold."""
    return _SURROGATE.search(text) is not None


def is_plain(value: Any) -> bool:
    """Whether ``value`` is an int, a string, a bool or ``None`` that :func:`encode` takes as
    it is (an int that prints, a string without lone surrogates)."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -MAX_PLAIN_INT < value < MAX_PLAIN_INT
    if isinstance(value, str):
        return not has_surrogate(value)
    return False


def _prints(value: int) -> bool:
    """Whether the interpreter prints ``value`` (not past its limit of digits)."""
    try:
        str(value)
    except ValueError:
        return False
    return True


class Unstorable(ValueError):
    """A value that the JSON columns cannot hold (and pickling was not allowed).

    :param problem: what is wrong, e.g. ``"value['when'] is a datetime"``
    """

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


def _check(value: Any) -> tuple[str | None, bool]:
    """Why ``value`` is not JSON-able (``None`` when it is), and whether ``jsonb`` would
    change it (a NUL character, or a float of 1e16 or more that it prints as an integer)."""
    exact = False
    stack: list[tuple[str, Any, int]] = [("value", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        kind = type(item)
        if kind is int and not -MAX_PLAIN_INT < item < MAX_PLAIN_INT and not _prints(item):
            return f"{path} is an int too long to store as JSON", exact
        if kind in _SCALARS:
            continue
        if kind is str:
            if has_surrogate(item):
                return f"{path} holds a lone surrogate, which PostgreSQL cannot store", exact
            exact = exact or "\x00" in item
            continue
        if kind is float:
            if not math.isfinite(item):
                return f"{path} is {item!r}, which JSON cannot hold", exact
            exact = exact or abs(item) >= _BIG_FLOAT
            continue
        if (kind is list or kind is tuple or kind is dict) and depth >= MAX_DEPTH:
            return f"{path} is nested more than {MAX_DEPTH} deep (or holds itself)", exact
        if kind is list or kind is tuple:
            stack.extend((f"{path}[{i}]", v, depth + 1) for i, v in enumerate(item))
            continue
        if kind is dict:
            for k, v in item.items():
                if type(k) is not str:
                    return f"{path} has a non-string key {k!r}", exact
                if has_surrogate(k):
                    return f"{path} has a key with a lone surrogate {k!r}", exact
                exact = exact or "\x00" in k
                stack.append((f"{path}[{k!r}]", v, depth + 1))
            continue
        return f"{path} is a {kind.__qualname__}", exact
    return None, exact


def encode(value: Any, *, allow_pickle: bool) -> Encoded:
    """Encode ``value`` for a row.

    :return: ``(json_text, None)`` for the jsonb column, or ``(None, raw)`` for the raw one
    :raises Unstorable: not JSON-able and ``allow_pickle`` is false (or pickling failed)
    """
    kind = type(value)
    if kind is int:
        if -MAX_PLAIN_INT < value < MAX_PLAIN_INT or _prints(value):
            return str(value), None
    elif kind is bool or value is None:
        return _dumps(value), None
    elif kind is str and "\x00" not in value and not has_surrogate(value):
        return _dumps(value), None
    problem, exact = _check(value)
    if problem is None:
        try:
            text = _dumps(value)
        except (ValueError, RecursionError) as exc:  # checked above; stay typed anyway
            raise Unstorable(f"value cannot be written as JSON: {exc}") from None
        if exact:
            return None, _JSON + text.encode()
        return text, None
    if not allow_pickle:
        raise Unstorable(problem)
    try:
        return None, _PICKLE + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise Unstorable(f"{problem}, and pickling it failed: {type(exc).__name__}: {exc}") from exc


def compress_result(encoded: Encoded, codec: str | None, threshold: int) -> Encoded:
    """What :func:`encode` made, compressed with ``codec`` when it holds at least
    ``threshold`` bytes (``codec=None``: as it is)."""
    if codec is None:
        return encoded
    text, raw = encoded
    if text is not None:
        if len(text) < threshold:  # (characters: never more than its UTF-8 bytes)
            return encoded
        raw = _JSON + text.encode()
    elif raw is None or len(raw) < threshold:
        return encoded
    return None, _COMPRESSED_TAG[codec] + compress(raw, codec)


def decode(text: str | None, raw: bytes | None, *, allow_pickle: bool) -> Any:
    """Decode what :func:`encode` (and :func:`compress_result`) made (``None`` and ``None``
    decode to ``None``).

    :raises Unstorable: the value is a pickle and ``allow_pickle`` is false, or compressed
        bytes are not what their codec writes
    """
    if text is not None:
        if text.isdigit():  # the common case of small results: skip the JSON parser
            return int(text)
        return _loads(text)
    if raw is None:
        return None
    tag, body = raw[:1], raw[1:]
    if tag == _JSON:
        return _loads(body)
    codec = _CODEC_OF_TAG.get(tag)
    if codec is not None:
        try:
            inner = decompress(body, codec)
        except (ValueError, ImportError) as exc:
            raise Unstorable(f"cannot decompress the stored value: {exc}") from None
        return decode(None, inner, allow_pickle=allow_pickle)
    if tag == _PICKLE:
        if not allow_pickle:
            raise Unstorable(
                "the stored value is a pickle; loading one runs code, so it needs "
                "PostgresStore(allow_pickle=True)"
            )
        return pickle.loads(body)  # opted in with allow_pickle
    raise Unstorable(f"unknown stored format {tag!r}")


def decode_results(
    records: Sequence[asyncpg.Record], *, allow_pickle: bool, where: str
) -> list[Any]:
    """The results of the succeeded rows among ``records`` (with ``status``, ``result``,
    ``result_raw``, ``key`` and ``idx``), in their order: one JSON parse when every one is
    in the ``jsonb`` column, else row by row.

    :param where: the asset and partition, for the message
    :raises StorageError: a result cannot be loaded (naming its item)
    """
    rows = [r for r in records if r["status"] == "succeeded"]
    texts = [r["result"] for r in rows]
    if None not in texts:
        return list(_loads("[" + ",".join(texts) + "]"))
    values: list[Any] = []
    for record in rows:
        try:
            values.append(decode(record["result"], record["result_raw"], allow_pickle=allow_pickle))
        except Unstorable as exc:
            shown = record["key"] if record["key"] is not None else str(record["idx"])
            raise StorageError(
                f"{where}: cannot load the result of item {shown!r}: {exc.problem}"
            ) from None
    return values
