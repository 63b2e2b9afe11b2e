"""How the ``postgres`` IO manager turns a value into stored bytes or JSON, and back.

Values are stored by (asset, partition) in the store's ``asset_values`` table, by the value
rules of :func:`flowstone.protocols.check_json` (shared with the in-memory IO manager's strict mode):

- JSON-able values (``None``, bools, numbers, strings, lists, tuples, dicts with string
  keys) as ``jsonb``. ``jsonb`` orders object keys by itself (shorter keys first), so a
  dict's key order is not kept. The few values ``jsonb`` would change (strings with NUL
  characters, floats of 1e16 or more, which it prints as integers) are kept as exact JSON
  text instead; so are values holding tuples, with the paths of the tuples, so that they
  load back as tuples (``json_tuples``). What JSON or PostgreSQL cannot hold (a surrogate
  code point in a string, a reference cycle, an int too long for text, nesting deeper
  than 500 levels) is not JSON-able;
- ``pyarrow.Table`` and ``pyarrow.RecordBatch`` as Arrow IPC stream bytes (pyarrow is
  imported only when such a value shows up), loaded back as the same type;
- ``bytes`` as ``bytea``;
- anything else only with ``allow_pickle=True`` (pickled; loading a pickle runs code, so
  keep it for data you trust). Otherwise :class:`~flowstone.StorageError` names the asset,
  raised before anything is written.

With compression on (:func:`compressed`), a value whose stored form has at least the
threshold's bytes goes to ``bytea`` compressed, and its format records the codec:
``bytes+zlib``, ``json_text+zstd`` (a JSON value is compressed as its exact text), and so
on; :func:`decode` decompresses what the format names.
"""

from __future__ import annotations

import json
import pickle
from typing import TYPE_CHECKING, Any

from flowstone import StorageError
from flowstone.protocols import check_json, compress, decompress, restore_tuples, tuple_paths

if TYPE_CHECKING:
    from flowstone.protocols import IOContext

__all__ = ["compressed", "decode", "encode", "is_arrow", "pyarrow_module", "where"]


#: The encoder of JSON values (``json.dumps`` with options builds a new one per call).
_VALUE_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def where(context: IOContext) -> str:
    """``asset 'a' partition 'p'``, for messages."""
    text = f"asset {context.asset!r}"
    return text if context.partition is None else f"{text} partition {context.partition!r}"


def pyarrow_module(context: IOContext) -> Any:
    """``pyarrow``, imported on first need."""
    try:
        import pyarrow as pa
        import pyarrow.ipc
    except ImportError:  # pragma: no cover - only when pyarrow vanished after storing
        raise StorageError(f"{where(context)}: Arrow values need pyarrow installed") from None
    return pa


def is_arrow(value: Any) -> bool:
    """Whether ``value`` comes from pyarrow (checked without importing it)."""
    return type(value).__module__.startswith("pyarrow")


def encode(
    context: IOContext, value: Any, *, allow_pickle: bool
) -> tuple[str, str | None, bytes | None]:
    """``(format, json text, bytes)`` for ``value``, before anything is written.

    :raises StorageError: the value has no format (naming the asset)
    """
    kind = type(value)
    # The common small values, with nothing for the checks below to find.
    if kind is int and value.bit_length() <= 64:
        return "json", int.__repr__(value), None
    if kind is bool or value is None:
        return "json", "null" if value is None else "true" if value else "false", None
    if kind is str and value.isascii() and "\x00" not in value:
        return "json", _VALUE_JSON.encode(value), None
    if is_arrow(value):
        pa = pyarrow_module(context)
        if isinstance(value, (pa.Table, pa.RecordBatch)):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, value.schema) as writer:
                if isinstance(value, pa.Table):
                    writer.write_table(value)
                else:
                    writer.write_batch(value)
            fmt = "arrow" if isinstance(value, pa.Table) else "arrow_batch"
            return fmt, None, sink.getvalue().to_pybytes()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes", None, bytes(value)
    check = check_json(value)
    if check.problem is None:
        if check.has_tuples:
            text = _VALUE_JSON.encode([tuple_paths(value), value])
            return "json_tuples", None, text.encode()
        text = _VALUE_JSON.encode(value)
        if check.exact:
            return "json_text", None, text.encode()
        return "json", text, None
    if allow_pickle:
        try:
            return "pickle", None, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise StorageError(
                f"{where(context)}: the postgres IO manager cannot pickle a "
                f"{type(value).__qualname__}: {type(exc).__name__}: {exc}"
            ) from exc
    raise StorageError(
        f"{where(context)}: the postgres IO manager cannot store a {type(value).__qualname__} "
        f"({check.problem}); return JSON-able data, bytes or an Arrow table, use table mode "
        "(metadata={'table': ...}), or opt in to pickle with PostgresStore(allow_pickle=True)"
    )


def compressed(
    fmt: str, text: str | None, data: bytes | None, codec: str | None, threshold: int
) -> tuple[str, str | None, bytes | None]:
    """What :func:`encode` gave, compressed with ``codec`` when it holds at least
    ``threshold`` bytes (the format then names the codec); else as it was."""
    if codec is None:
        return fmt, text, data
    if text is not None:
        if len(text) < threshold:  # (characters: never more than its UTF-8 bytes)
            return fmt, text, data
        data = text.encode()
        fmt, text = "json_text", None
    if data is None or len(data) < threshold:
        return fmt, text, data
    return f"{fmt}+{codec}", None, compress(data, codec)


def decode(
    context: IOContext, fmt: str, text: str | None, data: bytes | None, *, allow_pickle: bool
) -> Any:
    """The value stored as ``fmt`` (see :func:`encode` and :func:`compressed`).

    :raises StorageError: a pickle without ``allow_pickle``, an unknown format, or bytes
        that are not what their codec writes
    """
    if "+" in fmt:
        fmt, codec = fmt.split("+", 1)
        try:
            data = decompress(data or b"", codec)
        except (ValueError, ImportError) as exc:
            raise StorageError(
                f"{where(context)}: cannot decompress the stored value: {exc}"
            ) from exc
    if fmt == "json":
        return json.loads(text) if text is not None else None
    if fmt == "json_text":
        assert data is not None
        return json.loads(data)
    if fmt == "json_tuples":
        assert data is not None
        paths, value = json.loads(data)
        return restore_tuples(value, paths)
    if fmt == "bytes":
        return data
    if fmt in ("arrow", "arrow_batch"):
        pa = pyarrow_module(context)
        reader = pa.ipc.open_stream(pa.py_buffer(data))
        if fmt == "arrow":
            return reader.read_all()
        batches = list(reader)
        if len(batches) == 1:
            return batches[0]
        return pa.RecordBatch.from_pylist([], schema=reader.schema)
    if fmt == "pickle":
        if not allow_pickle:
            raise StorageError(
                f"{where(context)}: the stored value is a pickle; loading one runs code, "
                "so it needs PostgresStore(allow_pickle=True)"
            )
        assert data is not None
        return pickle.loads(data)  # opted in with allow_pickle
    raise StorageError(f"{where(context)}: unknown stored format {fmt!r}")
