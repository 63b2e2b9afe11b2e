"""``S3IOManager``: one S3 object per (asset, partition), registered as the ``s3`` IO manager.

Key layout: :mod:`._layout`; serializers: :mod:`._serializers`; whole-or-nothing uploads:
:mod:`._upload`; the client and its lifetime: :mod:`._client`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from flowstone import ConfigurationError, ValueNotFoundError
from flowstone.protocols import (
    COMPRESSION_THRESHOLD,
    compress,
    compression_for_asset,
    decompress,
)
from flowstone.protocols import resolve_compression as resolve

from ._client import AwsClient, error_code, retrying
from ._errors import S3StorageError, describe, mapped_errors
from ._layout import asset_prefix, object_key, parse_object_name
from ._serializers import SERIALIZERS, SerializeError, choose, decode, encode, serializer_of
from ._upload import MIN_PART_SIZE, put_object, read_object, upload_stream

if TYPE_CHECKING:
    from types import TracebackType

    import aioboto3

    from flowstone.protocols import IOContext

__all__ = ["S3IOManager"]

_MiB = 1024 * 1024


class S3IOManager:
    """Stores asset values as S3 objects, one per (asset, partition).

    ``S3IOManager(bucket="lake", prefix="flowstone")``; register it as an IO manager
    (``fs.Runtime(io_managers={"s3": ...})``) and name it on an asset
    (``@fs.asset(io_manager="s3")``).

    - **Layout**: ``<prefix>/<asset>/partition=<key>`` for a partition,
      ``<prefix>/<asset>/value`` for an unpartitioned value; names and keys are
      percent-encoded UTF-8 (``eu/west`` → ``eu%2Fwest``), see :mod:`flowstone.ext.s3`.
    - **Serializers**: JSON data by default; ``bytes`` as they are; a ``pyarrow.Table`` as
      Parquet (pyarrow is imported only for such a value); pickle only when asked for, by
      the asset (``metadata={"serializer": "pickle"}``) or for every asset of the manager
      (``serializer="pickle"``). The serializer is recorded in the object's metadata and
      content type, and loading reads it from there. An (async) iterator of ``bytes`` is
      streamed to S3 in parts and loads back as ``bytes``.
    - **Whole or nothing**: a value up to ``multipart_threshold`` bytes is one
      ``PutObject``; a bigger one is a multipart upload of ``part_size`` parts, aborted
      if anything fails (cancellation too), so no object is ever half written.
    - **The client** (one aioboto3 session and client) is opened on first use, or when
      the runtime it is registered with opens, and closed with the runtime (or
      :meth:`aclose`, or ``async with manager``).

    :param bucket: the bucket (it must exist); default ``FLOWSTONE_S3_BUCKET``, read when the
        manager is made (so ``io_manager="s3"`` works without registering one)
    :param prefix: the key prefix under which values go; default ``FLOWSTONE_S3_PREFIX``,
        else ``""`` (the bucket's top)
    :param endpoint_url: the S3 endpoint (MinIO, a test server); default
        ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS
    :param region_name: the region; default the environment's (``us-east-1`` if none)
    :param serializer: the serializer for every value (``"json"``, ``"bytes"``,
        ``"parquet"``, ``"pickle"``); default: chosen by the value's type
    :param compression: compress values of at least ``compression_threshold`` bytes:
        ``"zlib"``, ``"zstd"`` (needs ``zstandard``), ``"auto"`` / ``True`` (zstd when
        installed, else zlib); default off. An asset overrides it with
        ``metadata={"compression": ...}`` (``None`` turns it off). The codec is recorded on
        the object; streamed values are not compressed
    :param compression_threshold: the smallest value, in bytes, that is compressed
        (default 64 KiB)
    :param multipart_threshold: values bigger than this go up in parts (default 16 MiB)
    :param part_size: the size of one part (default 8 MiB, at least 5 MiB)
    :param session: an ``aioboto3.Session`` (a profile, explicit credentials)
    :param client_options: further ``session.client("s3", ...)`` arguments
    :raises ConfigurationError: a bad bucket, serializer or size
    """

    #: Objects asked for per ListObjectsV2 request (S3 returns at most 1,000).
    list_page_size = 1000

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str | None = None,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        serializer: str | None = None,
        compression: bool | str | None = None,
        compression_threshold: int = COMPRESSION_THRESHOLD,
        multipart_threshold: int = 16 * _MiB,
        part_size: int = 8 * _MiB,
        session: aioboto3.Session | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if bucket is None:
            bucket = os.environ.get("FLOWSTONE_S3_BUCKET")
            if not bucket:
                raise ConfigurationError(
                    "S3IOManager needs a bucket: register one with "
                    "fs.Runtime(io_managers={'s3': S3IOManager(bucket=...)}) or set "
                    "FLOWSTONE_S3_BUCKET (and FLOWSTONE_S3_PREFIX) for io_manager='s3'"
                )
        if prefix is None:
            prefix = os.environ.get("FLOWSTONE_S3_PREFIX", "")
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise ConfigurationError(f"S3IOManager: bucket must be a bucket name, got {bucket!r}")
        if serializer is not None and serializer not in SERIALIZERS:
            raise ConfigurationError(
                f"S3IOManager: serializer {serializer!r} is not one of "
                f"{', '.join(sorted(SERIALIZERS))}"
            )
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(
                f"S3IOManager: part_size must be at least {MIN_PART_SIZE} bytes (S3's "
                f"smallest part), got {part_size}"
            )
        if multipart_threshold < part_size:
            raise ConfigurationError(
                "S3IOManager: multipart_threshold must be at least part_size, got "
                f"{multipart_threshold} < {part_size}"
            )
        self.compression = resolve(compression, "S3IOManager")
        self.compression_threshold = compression_threshold
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.serializer = serializer
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._client = AwsClient(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            session=session,
            client_options=client_options,
        )

    def __repr__(self) -> str:
        return f"S3IOManager(bucket={self.bucket!r}, prefix={self.prefix!r})"

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint clients use (``None``: AWS)."""
        return self._client.endpoint_url

    # -- lifetime --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._client.get()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (a later call opens a new one)."""
        await self._client.aclose()

    # -- the IOManager protocol ------------------------------------------------------

    def key_of(self, asset: str, partition: str | None = None) -> str:
        """The object key of (``asset``, ``partition``).

        :raises S3StorageError: the name or key cannot be an object key
        """
        try:
            return object_key(self.prefix, asset, partition)
        except (UnicodeEncodeError, ValueError) as exc:
            raise S3StorageError(
                f"cannot be an object key: {exc}",
                bucket=self.bucket,
                asset=asset,
                partition=partition,
                reason="unserialisable",
            ) from None

    def _requested(self, context: IOContext) -> str | None:
        requested: str | None = context.metadata.get("serializer", self.serializer)
        if requested is not None and requested not in SERIALIZERS:
            raise ConfigurationError(
                f"asset {context.asset!r}: metadata serializer {requested!r} is not one of "
                f"{', '.join(sorted(SERIALIZERS))}"
            )
        return requested

    async def store(self, context: IOContext, value: Any) -> dict[str, Any]:
        """Write ``value`` for (asset, partition), replacing the previous object whole.

        :return: ``{"s3": {"uri", "bytes", "serializer", "etag"}}`` for the record
        :raises S3StorageError: the value cannot be serialized (nothing is written), the
            bucket is missing, the credentials are refused, or the upload failed (no
            object is half written; the previous one is left as it was)
        """
        key = self.key_of(context.asset, context.partition)
        where: dict[str, Any] = {
            "bucket": self.bucket,
            "key": key,
            "asset": context.asset,
            "partition": context.partition,
        }
        requested = self._requested(context)
        if requested in (None, "bytes") and _is_stream(value):
            client = await self._client.get()
            try:
                with mapped_errors("upload", **where):
                    etag = await upload_stream(
                        client,
                        self.bucket,
                        key,
                        value,
                        content_type="application/octet-stream",
                        metadata={"flowstone-serializer": "bytes"},
                        part_size=self.part_size,
                    )
            except TypeError as exc:
                raise S3StorageError(
                    f"cannot store the stream: {exc}",
                    **where,
                    reason="unserialisable",
                ) from exc
            return self._stored(key, "bytes", None, etag)
        serializer = choose(value, requested)
        try:
            encoded = encode(value, serializer)
        except SerializeError as exc:
            raise S3StorageError(
                f"the {serializer} serializer cannot store this value: {exc}",
                **where,
                reason="unserialisable",
            ) from exc
        except ImportError as exc:
            raise S3StorageError(
                f"the {serializer} serializer needs pyarrow: {exc}",
                **where,
                reason="unserialisable",
            ) from exc
        body = encoded.body
        metadata = {"flowstone-serializer": encoded.serializer, **encoded.metadata}
        codec = self._codec(context)
        if codec is not None and len(body) >= self.compression_threshold:
            body = compress(body, codec)
            metadata["flowstone-compression"] = codec
        client = await self._client.get()
        with mapped_errors("store the value", **where):
            etag = await put_object(
                client,
                self.bucket,
                key,
                body,
                content_type=encoded.content_type,
                metadata=metadata,
                threshold=self.multipart_threshold,
                part_size=self.part_size,
            )
        stored = self._stored(key, encoded.serializer, len(body), etag)
        if "flowstone-compression" in metadata:
            stored["s3"]["compression"] = metadata["flowstone-compression"]
        return stored

    def _codec(self, context: IOContext) -> str | None:
        return compression_for_asset(self.compression, context.asset, context.metadata)

    def _stored(self, key: str, serializer: str, size: int | None, etag: str) -> dict[str, Any]:
        info: dict[str, Any] = {"uri": f"s3://{self.bucket}/{key}", "serializer": serializer}
        if size is not None:
            info["bytes"] = size
        info["etag"] = etag
        return {"s3": info}

    async def load(self, context: IOContext) -> Any:
        """Read the value of (asset, partition), by the serializer recorded with it.

        :raises ValueNotFoundError: no object is stored
        :raises S3StorageError: the bucket is missing, the credentials are refused, or the
            object cannot be read back by its serializer
        """
        key = self.key_of(context.asset, context.partition)
        where: dict[str, Any] = {
            "bucket": self.bucket,
            "key": key,
            "asset": context.asset,
            "partition": context.partition,
        }
        client = await self._client.get()
        try:
            body, response = await read_object(client, self.bucket, key)
        except Exception as exc:
            if error_code(exc) == "NoSuchKey":
                raise ValueNotFoundError(context.asset, context.partition) from None
            with mapped_errors("load the value", **where):
                raise
            raise  # pragma: no cover - not a botocore error
        metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
        serializer = serializer_of(metadata, response.get("ContentType"))
        try:
            codec = metadata.get("flowstone-compression")
            if codec:
                body = decompress(body, codec)
            return decode(body, serializer, metadata)
        except Exception as exc:
            raise S3StorageError(
                f"cannot read the object back as {serializer}: {type(exc).__name__}: {exc}",
                **where,
                reason="corrupt",
            ) from exc

    async def exists(self, context: IOContext) -> bool:
        """Whether an object is stored for (asset, partition).

        :raises S3StorageError: the bucket is missing or the credentials are refused
        """
        key = self.key_of(context.asset, context.partition)
        client = await self._client.get()
        try:
            await retrying(lambda: client.head_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                with mapped_errors(
                    "check the value",
                    bucket=self.bucket,
                    key=key,
                    asset=context.asset,
                    partition=context.partition,
                ):
                    raise
                raise  # pragma: no cover - not a botocore error
            await self._check_bucket(context.asset, context.partition)
            return False
        return True

    async def _check_bucket(self, asset: str | None, partition: str | None) -> None:
        client = await self._client.get()
        try:
            await retrying(lambda: client.head_bucket(Bucket=self.bucket))
        except Exception as exc:
            code = error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise S3StorageError(
                    "the bucket does not exist",
                    bucket=self.bucket,
                    asset=asset,
                    partition=partition,
                    reason="missing bucket",
                ) from exc
            reason, message = describe(exc)
            raise S3StorageError(
                message, bucket=self.bucket, asset=asset, partition=partition, reason=reason
            ) from exc

    async def delete(self, context: IOContext) -> None:
        """Delete the object of (asset, partition); a missing one is not an error."""
        key = self.key_of(context.asset, context.partition)
        client = await self._client.get()
        with mapped_errors(
            "delete the value",
            bucket=self.bucket,
            key=key,
            asset=context.asset,
            partition=context.partition,
        ):
            await retrying(lambda: client.delete_object(Bucket=self.bucket, Key=key))

    async def list_partitions(self, asset: str) -> list[str | None]:
        """The partition keys with a stored value, sorted (``None`` first, for the
        unpartitioned value).

        :raises S3StorageError: the bucket is missing or the credentials are refused
        """
        try:
            start = asset_prefix(self.prefix, asset)
        except UnicodeEncodeError:
            return []
        client = await self._client.get()
        keys: list[str] = []
        unpartitioned = False
        token: str | None = None
        with mapped_errors("list the partitions", bucket=self.bucket, key=start, asset=asset):
            while True:
                args: dict[str, Any] = {
                    "Bucket": self.bucket,
                    "Prefix": start,
                    "MaxKeys": self.list_page_size,
                }
                if token:
                    args["ContinuationToken"] = token
                page: dict[str, Any] = await retrying(partial(client.list_objects_v2, **args))
                for entry in page.get("Contents", ()):
                    is_value, key = parse_object_name(entry["Key"][len(start) :])
                    if not is_value:
                        continue
                    if key is None:
                        unpartitioned = True
                    else:
                        keys.append(key)
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break
        found: list[str | None] = [None] if unpartitioned else []
        return found + sorted(keys)


def _is_stream(value: Any) -> bool:
    """Whether ``value`` is an iterator or async iterable of chunks (not a container)."""
    if isinstance(value, AsyncIterable):
        return True
    return isinstance(value, Iterator) or inspect.isgenerator(value)
