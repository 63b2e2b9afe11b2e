"""DynamoDB items for scatter: ``DynamoDBItemReader`` reads a query or a (parallel) scan
page by page, resumable from a checkpointed cursor.

- :class:`DynamoDBItemReader` — ``key_condition`` for a query, else a scan; plain Python
  ``values``; items as plain Python dicts; ``LastEvaluatedKey`` (per segment) as the cursor.
- :class:`DynamoDBError` — what fails, naming the table and index.

The client takes ``endpoint_url=`` and otherwise honours ``AWS_ENDPOINT_URL_DYNAMODB`` /
``AWS_ENDPOINT_URL`` (DynamoDB Local, a test server: the ``moto_server`` fixture of
:mod:`flowstone.testing`).

Needs the ``dynamodb`` extra: ``pip install 'flowstone[dynamodb]'``.
"""

from __future__ import annotations

try:
    import aioboto3 as _aioboto3  # noqa: F401 - fail early with the install hint
    import boto3 as _boto3  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.dynamodb", "aioboto3", "dynamodb") from _exc

from ._reader import DynamoDBError as DynamoDBError
from ._reader import DynamoDBItemReader as DynamoDBItemReader

__all__ = ("DynamoDBError", "DynamoDBItemReader")

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
