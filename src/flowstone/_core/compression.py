"""Compressing stored values: zlib (the standard library) or zstd (``zstandard``, optional).

Shared by the IO managers and stores that keep bytes (S3, PostgreSQL, durable scatter
results). A value's bytes are compressed only at or above a size threshold, and each store
records the codec with the value (S3 in the object's metadata, PostgreSQL in the value's
format or the result's tag byte), so a reader decompresses exactly what was compressed and
never guesses. ``"auto"`` picks zstd when ``zstandard`` is installed, else zlib.
"""

from __future__ import annotations

import importlib.util
import zlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CODECS", "DEFAULT_THRESHOLD", "compress", "decompress", "for_asset", "resolve"]

#: The codecs a manager or an asset may name (``"auto"`` resolves to one of them).
CODECS = ("zlib", "zstd")
#: The smallest value, in bytes, compressed unless a store is told otherwise.
DEFAULT_THRESHOLD = 64 * 1024


def _has_zstd() -> bool:
    return importlib.util.find_spec("zstandard") is not None


def resolve(choice: Any, where: str) -> str | None:
    """The codec ``choice`` names: ``None``/``False`` (off), ``True``/``"auto"``, ``"zlib"``
    or ``"zstd"``.

    :raises ConfigurationError: an unknown codec, or zstd without ``zstandard`` (naming
        ``where``)
    """
    if choice is None or choice is False:
        return None
    if choice is True or choice == "auto":
        return "zstd" if _has_zstd() else "zlib"
    if choice not in CODECS:
        raise ConfigurationError(f"{where}: compression {choice!r} is not one of auto, zlib, zstd")
    if choice == "zstd" and not _has_zstd():
        raise ConfigurationError(f"{where}: compression 'zstd' needs the zstandard package")
    return str(choice)


def for_asset(default: str | None, asset: str, metadata: Mapping[str, Any]) -> str | None:
    """The codec of ``asset``: its ``metadata["compression"]`` when it sets one (``None``
    turns compression off), else ``default`` (a manager's, already resolved).

    :raises ConfigurationError: the asset names an unknown codec
    """
    if "compression" not in metadata:
        return default
    return resolve(metadata["compression"], f"asset {asset!r}")


def compress(data: bytes, codec: str) -> bytes:
    """``data`` compressed with ``codec``."""
    if codec == "zstd":
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    return zlib.compress(data, 6)


def decompress(data: bytes, codec: str) -> bytes:
    """What :func:`compress` compressed.

    :raises ValueError: an unknown codec, or the data is not what the codec writes
    :raises ImportError: zstd data and no ``zstandard``
    """
    if codec == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompress(data))
    if codec == "zlib":
        try:
            return zlib.decompress(data)
        except zlib.error as exc:
            raise ValueError(f"not zlib data: {exc}") from None
    raise ValueError(f"unknown compression {codec!r}")
