"""DynamoDB's typed JSON and plain Python values, both ways, and cursors as JSON text.

Values given to a reader (``values={":p": "a", ":n": 3}``) go through boto3's
``TypeSerializer`` (a float becomes a ``Decimal`` first: DynamoDB numbers are decimals).
Items come back through ``TypeDeserializer`` and then as plain Python: a number is an
``int`` when it is whole, a ``float`` when that float's shortest text (``repr``) is the
same number (``5.25``, ``0.1``; so JSON text round-trips), else it stays a
``Decimal``; binary is ``bytes``; sets stay sets.

A ``LastEvaluatedKey`` is typed JSON already except binary values, which a cursor holds as
base64 (``{"B64": "..."}``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

__all__ = ["from_dynamo", "key_from_json", "key_to_json", "plain", "to_dynamo"]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _decimals(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(v) for v in value]
    if isinstance(value, set | frozenset):
        return {_decimals(v) for v in value}
    return value


def to_dynamo(value: Any) -> dict[str, Any]:
    """A plain Python value as DynamoDB's typed JSON (``"a"`` → ``{"S": "a"}``).

    :raises TypeError: a value DynamoDB cannot hold
    """
    result: dict[str, Any] = _serializer.serialize(_decimals(value))
    return result


def plain(value: Any) -> Any:
    """A deserialized value with ``Decimal`` as ``int``/``float`` where lossless, ``Binary``
    as ``bytes``, recursively."""
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else value
    if isinstance(value, Binary):
        return bytes(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return {plain(v) for v in value}
    return value


def from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed JSON as a dict of plain Python values."""
    return {name: plain(_deserializer.deserialize(value)) for name, value in item.items()}


def key_to_json(key: Mapping[str, Any]) -> dict[str, Any]:
    """A ``LastEvaluatedKey`` as JSON-able data (binary as base64)."""
    out: dict[str, Any] = {}
    for name, typed in key.items():
        ((kind, value),) = typed.items()
        if kind == "B":
            raw = value.value if isinstance(value, Binary) else value
            out[name] = {"B64": base64.b64encode(bytes(raw)).decode()}
        else:
            out[name] = {kind: value}
    return out


def key_from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` that :func:`key_to_json` wrote as ``data``."""
    out: dict[str, Any] = {}
    for name, typed in data.items():
        ((kind, value),) = typed.items()
        out[name] = {"B": base64.b64decode(value)} if kind == "B64" else {kind: value}
    return out
