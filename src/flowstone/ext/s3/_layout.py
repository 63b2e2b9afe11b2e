"""Where a value lives in the bucket: the key layout and the partition key encoding.

Under the manager's prefix, one object per (asset, partition)::

    <prefix>/<asset>/value                        the unpartitioned value
    <prefix>/<asset>/partition=<encoded key>      one partition's value

The asset name and the partition key are each one key segment: their UTF-8 bytes
percent-encoded, with only RFC 3986's unreserved characters (``A-Z a-z 0-9 - . _ ~``)
kept as they are. ``2025-01-02`` stays ``2025-01-02``, ``eu/west`` becomes ``eu%2Fwest``,
``café`` becomes ``caf%C3%A9``, the empty key is ``partition=``. The encoding is injective
and reversible (:func:`encode_segment` / :func:`decode_segment`); no key can add a ``/``
to the object key or climb out of its asset (``.`` and ``..`` sit behind
``partition=``). It is the encoding the Parquet plugin uses for its directories.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = [
    "MAX_KEY_BYTES",
    "PARTITION_PREFIX",
    "VALUE_NAME",
    "decode_segment",
    "encode_segment",
    "object_key",
    "parse_object_name",
]

#: The object name of an asset's unpartitioned value.
VALUE_NAME = "value"
#: What a partition's object name starts with, before its encoded key.
PARTITION_PREFIX = "partition="
#: The longest object key S3 accepts, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


def encode_segment(text: str) -> str:
    """``text`` as one key segment: percent-encoded UTF-8, unreserved characters kept.

    :raises UnicodeEncodeError: ``text`` holds a lone surrogate (not valid UTF-8)
    """
    return quote(text, safe="", encoding="utf-8", errors="strict")


def decode_segment(segment: str) -> str:
    """The text :func:`encode_segment` encoded as ``segment``.

    :raises UnicodeDecodeError: ``segment`` does not decode to UTF-8 text
    """
    return unquote(segment, encoding="utf-8", errors="strict")


def asset_prefix(prefix: str, asset: str) -> str:
    """The key prefix under which ``asset``'s objects are (ends with ``/``).

    :raises UnicodeEncodeError: the name is not valid UTF-8
    """
    head = f"{prefix}/" if prefix else ""
    return f"{head}{encode_segment(asset)}/"


def object_key(prefix: str, asset: str, partition: str | None) -> str:
    """The object key of the value of (``asset``, ``partition``) under ``prefix``.

    :raises UnicodeEncodeError: the name or key is not valid UTF-8
    :raises ValueError: the key would be longer than S3's 1024 bytes
    """
    name = VALUE_NAME if partition is None else PARTITION_PREFIX + encode_segment(partition)
    key = asset_prefix(prefix, asset) + name
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(
            f"the object key would be {len(key.encode())} bytes long, over S3's {MAX_KEY_BYTES}"
        )
    return key


def parse_object_name(name: str) -> tuple[bool, str | None]:
    """Whether ``name`` (an object key after its asset's prefix) is a value, and its key.

    Only the canonical spelling is a value (``partition=%7e`` is not where ``~`` is kept),
    so what another tool put beside the values is never mistaken for one.
    """
    if name == VALUE_NAME:
        return True, None
    if not name.startswith(PARTITION_PREFIX):
        return False, None
    segment = name.removeprefix(PARTITION_PREFIX)
    try:
        key = decode_segment(segment)
    except UnicodeDecodeError:
        return False, None
    if encode_segment(key) != segment:
        return False, None
    return True, key
