"""Where a value lives: the hive-style layout and the partition key encoding.

Under the manager's root, an asset's values are laid out as Hive does::

    root/<asset>/data.parquet                          the unpartitioned value
    root/<asset>/partition=<encoded key>/part-0.parquet one partition's value

A key (and an asset name) is encoded as a path segment by percent-encoding its UTF-8
bytes, keeping only RFC 3986's unreserved characters (``A-Z a-z 0-9 - . _ ~``) as they are:
``2025-01-02`` stays ``2025-01-02``, ``eu/west`` becomes ``eu%2Fwest``, ``café`` becomes
``caf%C3%A9``. The encoding is injective and reversible, no key can climb out of its
directory (``/`` and ``\\`` are encoded; ``.`` and ``..`` sit behind ``partition=``), and
it is the ``uri`` segment encoding ``pyarrow.dataset`` decodes when it discovers a hive
partitioning, so ``ds.dataset(root / "orders", partitioning="hive")`` reads the partition
column back as the original keys. Temporary files start with ``.``, which readers of
datasets skip.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from flowstone import StorageError

__all__ = [
    "DATA_FILE",
    "PARTITION_FILE",
    "PARTITION_PREFIX",
    "decode_segment",
    "encode_segment",
    "parse_value_path",
    "value_path",
]

#: The file name of an asset's unpartitioned value.
DATA_FILE = "data.parquet"
#: The file name of one partition's value, inside its ``partition=...`` directory.
PARTITION_FILE = "part-0.parquet"
#: The name of a partition directory before its encoded key.
PARTITION_PREFIX = "partition="

# File systems limit one path segment to 255 bytes (S3 a whole key to 1024).
_MAX_SEGMENT = 255


def encode_segment(text: str) -> str:
    """``text`` as one path segment: percent-encoded UTF-8, unreserved characters kept.

    :raises UnicodeEncodeError: ``text`` holds a lone surrogate (not valid UTF-8)
    """
    return quote(text, safe="", encoding="utf-8", errors="strict")


def decode_segment(segment: str) -> str:
    """The text :func:`encode_segment` encoded as ``segment``."""
    return unquote(segment, encoding="utf-8", errors="strict")


def _where(asset: str, partition: str | None) -> str:
    return f"asset {asset!r}" + (f" partition {partition!r}" if partition is not None else "")


def value_path(asset: str, partition: str | None) -> str:
    """The path of the value of (``asset``, ``partition``), relative to the root, with ``/``.

    :raises StorageError: the name or key cannot be a path segment (not valid UTF-8, or
        longer than 255 bytes once encoded)
    """
    try:
        directory = encode_segment(asset)
        segment = None if partition is None else PARTITION_PREFIX + encode_segment(partition)
    except UnicodeEncodeError as exc:
        raise StorageError(
            f"{_where(asset, partition)}: parquet: the name cannot be stored as a path: {exc}"
        ) from None
    for part in (directory, segment):
        if part is not None and len(part) > _MAX_SEGMENT:
            raise StorageError(
                f"{_where(asset, partition)}: parquet: the encoded path segment is "
                f"{len(part)} bytes long, over the {_MAX_SEGMENT} a file system allows"
            )
    if segment is None:
        return f"{directory}/{DATA_FILE}"
    return f"{directory}/{segment}/{PARTITION_FILE}"


def parse_value_path(relative: str) -> tuple[bool, str | None]:
    """Whether ``relative`` (a path under an asset's directory) is a value, and its key.

    ``data.parquet`` is the unpartitioned value (key ``None``);
    ``partition=<key>/part-0.parquet`` is the partition ``<key>``; anything else (temporary
    files, files of other tools, a key spelled other than :func:`encode_segment` spells it)
    is not a value.
    """
    if relative == DATA_FILE:
        return True, None
    directory, sep, name = relative.partition("/")
    if not sep or name != PARTITION_FILE or not directory.startswith(PARTITION_PREFIX):
        return False, None
    segment = directory.removeprefix(PARTITION_PREFIX)
    try:
        key = decode_segment(segment)
    except UnicodeDecodeError:
        return False, None
    # Only the canonical spelling is a value: ``%7e`` is not where ``~`` is stored.
    if encode_segment(key) != segment:
        return False, None
    return True, key
