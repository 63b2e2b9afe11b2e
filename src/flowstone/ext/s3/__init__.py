"""S3 storage and items: ``S3IOManager`` keeps asset values as objects, ``S3ItemReader``
feeds a scatter from the objects under a prefix.

- :class:`S3IOManager` — one object per (asset, partition); JSON, bytes, Arrow tables as
  Parquet, pickle when asked for; registered as the ``s3`` IO manager.
- :class:`S3ItemReader` — an ``ItemReader`` over the objects under a prefix: one item per
  object (``format="keys"``) or per line of JSON Lines / row of CSV, optionally gzipped,
  streamed and resumable from a checkpointed cursor.
- :class:`S3KeySensor` — a ``flowstone.ext.schedule`` sensor: one run per new object
  under a prefix.
- :class:`S3StorageError` — what fails, naming the bucket, key, asset and partition.
- For plugins on other AWS services: :class:`AwsClient` (one aioboto3 client, opened once
  and closed with its owner) and :func:`retrying` (throttling retried with backoff).

Key layout, under the manager's prefix::

    <prefix>/<asset>/value                      the unpartitioned value
    <prefix>/<asset>/partition=<encoded key>    one partition's value

Asset names and partition keys are percent-encoded UTF-8 with RFC 3986's unreserved
characters (``A-Z a-z 0-9 - . _ ~``) kept: ``2025-01-02`` stays as it is, ``eu/west``
becomes ``eu%2Fwest``, ``café`` becomes ``caf%C3%A9`` (:func:`encode_segment`,
:func:`decode_segment`).

Every client takes ``endpoint_url=`` and otherwise honours ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL``, so the same code runs against AWS, MinIO or a test server (the
``moto_server`` fixture of :mod:`flowstone.testing`).

Needs the ``s3`` extra: ``pip install 'flowstone[s3]'``.
"""

from __future__ import annotations

try:
    import aioboto3 as _aioboto3  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.s3", "aioboto3", "s3") from _exc

from ._client import AwsClient as AwsClient
from ._client import is_retryable as is_retryable
from ._client import retrying as retrying
from ._errors import S3StorageError as S3StorageError
from ._io import S3IOManager as S3IOManager
from ._layout import decode_segment as decode_segment
from ._layout import encode_segment as encode_segment
from ._reader import S3ItemReader as S3ItemReader
from ._sensor import S3KeySensor as S3KeySensor

__all__ = (
    "AwsClient",
    "S3IOManager",
    "S3ItemReader",
    "S3KeySensor",
    "S3StorageError",
    "decode_segment",
    "encode_segment",
    "is_retryable",
    "retrying",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
