"""How a value becomes an object's bytes, and back; the serializer is recorded with the object.

=========  ===================================  =============================================
name       content type                         values
=========  ===================================  =============================================
``json``   ``application/json``                 JSON data (the default); tuples come back as
                                                tuples (their paths are kept in the object's
                                                ``flowstone-tuples`` metadata)
``bytes``  ``application/octet-stream``         ``bytes``, ``bytearray``, ``memoryview``
``parquet`` ``application/vnd.apache.parquet``  ``pyarrow.Table`` / ``RecordBatch`` (loaded as a
                                                Table); needs pyarrow, imported only here
``pickle`` ``application/x-python-pickle``      anything picklable, only when opted in
=========  ===================================  =============================================

The name is written to the object's user metadata (``x-amz-meta-flowstone-serializer``)
and its content type, so a reader never guesses. An object without that metadata (written
by another tool) is read by its content type, else as bytes.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from typing import Any

from flowstone.protocols import check_json, restore_tuples, tuple_paths

__all__ = [
    "CONTENT_TYPES",
    "SERIALIZERS",
    "Encoded",
    "SerializeError",
    "choose",
    "decode",
    "encode",
]

CONTENT_TYPES: dict[str, str] = {
    "json": "application/json",
    "bytes": "application/octet-stream",
    "parquet": "application/vnd.apache.parquet",
    "pickle": "application/x-python-pickle",
}
#: The serializer names a manager or an asset may choose.
SERIALIZERS = frozenset(CONTENT_TYPES)

#: Above this many bytes of tuple paths, the JSON value is wrapped with its paths instead
#: (S3 allows 2 KiB of user metadata in all).
_MAX_TUPLES_METADATA = 1536


class SerializeError(ValueError):
    """The value cannot be written by the serializer chosen for it."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A value's bytes and what to record with them."""

    body: bytes
    serializer: str
    metadata: dict[str, str]

    @property
    def content_type(self) -> str:
        """The object's ``Content-Type``."""
        return CONTENT_TYPES[self.serializer]


def _is_arrow(value: Any) -> bool:
    kind = type(value)
    return kind.__module__.startswith("pyarrow") and kind.__name__ in ("Table", "RecordBatch")


def choose(value: Any, requested: str | None) -> str:
    """The serializer for ``value``: ``requested`` if given, else by its type
    (bytes-like: ``bytes``; an Arrow table: ``parquet``; anything else: ``json``)."""
    if requested is not None:
        return requested
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes"
    if _is_arrow(value):
        return "parquet"
    return "json"


def encode(value: Any, serializer: str) -> Encoded:
    """``value`` as bytes by ``serializer``.

    :raises SerializeError: the serializer cannot write this value (why is in the message)
    """
    if serializer == "bytes":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise SerializeError(f"the bytes serializer needs bytes, got {type(value).__name__}")
        return Encoded(bytes(value), "bytes", {})
    if serializer == "json":
        problem = check_json(value).problem
        if problem is not None:
            raise SerializeError(
                f"not JSON data ({problem}); return JSON-able data, bytes or an Arrow "
                "table, or opt in to pickle with metadata={'serializer': 'pickle'}"
            )
        paths = tuple_paths(value)
        if not paths:
            return Encoded(_dumps(value), "json", {})
        text = json.dumps(paths, separators=(",", ":"))
        if len(text) <= _MAX_TUPLES_METADATA:
            return Encoded(_dumps(value), "json", {"flowstone-tuples": text})
        wrapped = {"value": value, "tuples": paths}
        return Encoded(_dumps(wrapped), "json", {"flowstone-json": "wrapped"})
    if serializer == "parquet":
        if not _is_arrow(value):
            raise SerializeError(
                f"the parquet serializer needs a pyarrow Table, got {type(value).__name__}"
            )
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_batches([value]) if isinstance(value, pa.RecordBatch) else value
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return Encoded(sink.getvalue().to_pybytes(), "parquet", {})
    if serializer == "pickle":
        try:
            body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializeError(f"cannot be pickled: {type(exc).__name__}: {exc}") from exc
        return Encoded(body, "pickle", {})
    raise SerializeError(f"unknown serializer {serializer!r}")  # pragma: no cover - validated


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def serializer_of(metadata: dict[str, str], content_type: str | None) -> str:
    """The serializer recorded with an object (its metadata, else its content type)."""
    recorded = metadata.get("flowstone-serializer")
    if recorded in SERIALIZERS:
        return recorded
    base = (content_type or "").partition(";")[0].strip()
    for name, known in CONTENT_TYPES.items():
        if base == known and name != "pickle":  # never unpickle what flowstone did not write
            return name
    return "bytes"


def decode(body: bytes, serializer: str, metadata: dict[str, str]) -> Any:
    """The value ``encode`` wrote as ``body``.

    :raises ValueError: the body is not what its serializer writes
    :raises ImportError: a Parquet object and no pyarrow
    """
    if serializer == "bytes":
        return body
    if serializer == "json":
        value = json.loads(body)
        if metadata.get("flowstone-json") == "wrapped":
            return restore_tuples(value["value"], value["tuples"])
        tuples = metadata.get("flowstone-tuples")
        return restore_tuples(value, json.loads(tuples)) if tuples else value
    if serializer == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(body))
    if serializer == "pickle":
        return pickle.load(io.BytesIO(body))
    raise ValueError(f"unknown serializer {serializer!r}")  # pragma: no cover
