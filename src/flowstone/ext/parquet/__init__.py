"""Parquet storage: ``ParquetIOManager(root)`` keeps asset values as Parquet files.

- :class:`ParquetIOManager` — ``pyarrow.Table``, ``RecordBatch``, ``RecordBatchReader``
  (streamed, batch by batch) and pandas DataFrame values under a local directory or an
  ``s3://bucket/prefix`` (pyarrow's S3 file system; ``endpoint_url=`` or
  ``AWS_ENDPOINT_URL`` for MinIO or a test server); registered as the ``parquet`` IO
  manager.

Layout (hive style), under the root::

    <asset>/data.parquet                             the unpartitioned value
    <asset>/partition=<encoded key>/part-0.parquet   one partition's value

Asset names and partition keys are percent-encoded UTF-8 with RFC 3986's unreserved
characters (``A-Z a-z 0-9 - . _ ~``) kept: ``2025-01-02`` stays as it is, ``eu/west``
becomes ``eu%2Fwest``, ``café`` becomes ``caf%C3%A9`` (:func:`encode_segment`,
:func:`decode_segment`). It is the encoding ``pyarrow.dataset`` decodes, so
``ds.dataset(f"{root}/orders", partitioning="hive")`` reads every partition with a
``partition`` column holding the original keys. Writes are atomic: a reader sees the
previous value or the new one, never part of one.

Needs the ``parquet`` extra: ``pip install 'flowstone[parquet]'``.
"""

from __future__ import annotations

try:
    import pyarrow as _pyarrow  # noqa: F401 - fail early with the install hint
    import pyarrow.parquet as _pyarrow_parquet  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.parquet", "pyarrow", "parquet") from _exc

from ._io import LOAD_OPTIONS as LOAD_OPTIONS
from ._io import ParquetIOManager as ParquetIOManager
from ._layout import decode_segment as decode_segment
from ._layout import encode_segment as encode_segment

__all__ = ("LOAD_OPTIONS", "ParquetIOManager", "decode_segment", "encode_segment")

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
