"""The S3 plugin's error, and the seam that turns botocore's errors into it."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from flowstone import StorageError

from ._client import CREDENTIAL_ERRORS, error_code

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["S3StorageError", "mapped_errors"]


class S3StorageError(StorageError):
    """An S3 call failed, or a value could not be stored; names where.

    :param message: what went wrong
    :param bucket: the bucket
    :param key: the object key (or key prefix) concerned, if any
    :param asset: the asset, when an asset's value was concerned
    :param partition: its partition key, if any
    :param reason: a short classification: ``"missing bucket"``, ``"credentials"``,
        ``"unserialisable"``, ``"not found"``, ``"corrupt"`` or ``"error"``
    """

    def __init__(
        self,
        message: str,
        *,
        bucket: str,
        key: str | None = None,
        asset: str | None = None,
        partition: str | None = None,
        reason: str = "error",
    ) -> None:
        self.bucket = bucket
        self.key = key
        self.asset = asset
        self.partition = partition
        self.reason = reason
        where: list[str] = []
        if asset is not None:
            where.append(f"asset {asset!r}")
        if partition is not None:
            where.append(f"partition {partition!r}")
        address = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
        head = " ".join(where)
        super().__init__(f"{head + ': ' if head else ''}{address}: {message}")


def describe(exc: BaseException) -> tuple[str, str]:
    """(reason, message) for a botocore error."""
    code = error_code(exc)
    if code in ("NoSuchBucket",):
        return "missing bucket", "the bucket does not exist"
    if code in CREDENTIAL_ERRORS:
        return "credentials", f"the credentials were refused ({code}: {_message(exc)})"
    if isinstance(exc, NoCredentialsError):
        return "credentials", "no AWS credentials were found"
    if code in ("NoSuchKey", "404", "NotFound"):
        return "not found", "no such object"
    return "error", f"{type(exc).__name__}: {exc}"


def _message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


@contextmanager
def mapped_errors(
    action: str,
    *,
    bucket: str,
    key: str | None = None,
    asset: str | None = None,
    partition: str | None = None,
) -> Iterator[None]:
    """Raise botocore errors met inside as :class:`S3StorageError` (the cause chained)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        reason, message = describe(exc)
        raise S3StorageError(
            f"could not {action}: {message}",
            bucket=bucket,
            key=key,
            asset=asset,
            partition=partition,
            reason=reason,
        ) from exc
