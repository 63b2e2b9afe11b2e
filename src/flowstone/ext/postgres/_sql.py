"""SQL building blocks shared by the PostgreSQL plugin: identifiers, partition ids, JSON.

Everything that puts a name into SQL text goes through :func:`quote_ident` after
:func:`validate_identifier`; values always travel as bind parameters.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import TypeAlias

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    #: A connection as operations receive it: a plain one or a pool's proxy.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    #: An asyncpg pool of plain records.
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]

__all__ = [
    "advisory_key",
    "clean_text",
    "has_nul",
    "dump_json",
    "load_json",
    "partition_id",
    "qualified",
    "quote_ident",
    "to_utc",
    "validate_column",
    "validate_identifier",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
#: PostgreSQL truncates identifiers longer than this many bytes.
MAX_IDENTIFIER_BYTES = 63


def validate_identifier(name: object, what: str = "identifier") -> str:
    """Check that ``name`` is a plain SQL identifier (letters, digits, ``_``, ``$``).

    :param name: the candidate
    :param what: what the name is for, used in the error message
    :return: ``name``
    :raises ValueError: the name is empty, too long or has other characters
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits, '_' or '$', not starting with a digit"
        )
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"invalid {what} {name!r}: longer than {MAX_IDENTIFIER_BYTES} bytes")
    return name


def validate_column(name: object, what: str = "column name") -> str:
    """Check that ``name`` can be a (quoted) column name: a non-empty string of printable text.

    Column names are more lenient than :func:`validate_identifier` because they come from
    data (dict keys, Arrow field names); they are always quoted.

    :raises ValueError: the name is not a string, empty, too long or has control characters
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid {what} {name!r}: must be a non-empty string")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValueError(f"invalid {what} {name!r}: control characters are not allowed")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"invalid {what} {name!r}: longer than {MAX_IDENTIFIER_BYTES} bytes")
    return name


def quote_ident(name: str) -> str:
    """Quote an identifier for SQL text: ``orders`` → ``"orders"``, doubling inner quotes."""
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    """A quoted, schema-qualified name: ``"flowstone"."runs"``."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def partition_id(partition: str | None) -> str:
    """The non-null key column value standing for a partition key.

    Primary keys cannot hold ``NULL``, so the unpartitioned value is stored as ``""`` and a
    partition key ``k`` as ``"=k"``; the readable key is kept in its own nullable column.
    """
    return "" if partition is None else "=" + partition


def advisory_key(namespace: str, name: str) -> tuple[int, int]:
    """Two signed 32-bit ints for ``pg_advisory_*lock(int, int)``, stable across processes."""
    space = int.from_bytes(hashlib.blake2b(namespace.encode(), digest_size=4).digest(), "big")
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")
    return _signed32(space), _signed32(key)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def _storable(value: Any) -> Any:
    """``value`` with what ``jsonb`` cannot hold replaced: NUL characters, NaN, infinities."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_storable(v) for v in items]
    return value


#: One encoder for every record field: ``json.dumps`` with options builds a new one per call.
_RECORD_JSON = json.JSONEncoder(default=_json_default, allow_nan=False, separators=(",", ":"))
_STORABLE_JSON = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def dump_json(value: Any) -> str:
    """JSON text for a record field (metadata, tags) that ``jsonb`` accepts.

    What JSON cannot hold becomes ``str()``; NUL characters and non-finite floats are
    replaced, since ``jsonb`` rejects them.
    """
    if not value:
        return "{}" if isinstance(value, Mapping) else json.dumps(value)
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        text = _RECORD_JSON.encode(value)
    except ValueError:
        text = ""
    if not text or "\\u0000" in text:
        text = _STORABLE_JSON.encode(_storable(value))
    return text


def has_nul(*values: str | None) -> bool:
    """Whether any of ``values`` holds a NUL character, which PostgreSQL text cannot store."""
    for v in values:
        if v and "\x00" in v:
            return True
    return False


def clean_text(value: str | None) -> str | None:
    """``value`` without NUL characters, which PostgreSQL text cannot hold."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def load_json(text: str | None) -> Any:
    """Parse JSON text read back from the database (``None`` stays ``None``)."""
    return None if text is None else json.loads(text)


def to_utc(value: datetime | None) -> datetime | None:
    """A timezone-aware datetime for ``timestamptz`` columns; a naive one is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
