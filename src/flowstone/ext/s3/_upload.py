"""Putting one object whole or not at all: one ``PutObject``, or a multipart upload that is
completed only when every part is in and aborted on any failure (cancellation included).

An S3 object appears when its upload completes, never before, so a reader sees the old
value or the new one. A multipart upload that is neither completed nor aborted would keep
its parts (and their cost) on the bucket; the abort runs shielded from cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import anyio

from ._client import DROPPED, RESUMES, get_rest, retrying

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MIN_PART_SIZE", "put_object", "read_object", "upload_stream"]

#: S3's smallest part but the last.
MIN_PART_SIZE = 5 * 1024 * 1024


async def put_object(
    client: Any,
    bucket: str,
    key: str,
    body: bytes,
    *,
    content_type: str,
    metadata: Mapping[str, str],
    threshold: int,
    part_size: int,
) -> str:
    """Store ``body`` at ``key``: one request up to ``threshold`` bytes, else in parts.

    :return: the new object's ETag
    """
    if len(body) <= threshold:
        response = await retrying(
            lambda: client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata=dict(metadata),
            )
        )
        return str(response.get("ETag", "")).strip('"')
    view = memoryview(body)
    chunks = (view[i : i + part_size] for i in range(0, len(body), part_size))
    return await upload_stream(
        client,
        bucket,
        key,
        chunks,
        content_type=content_type,
        metadata=metadata,
        part_size=part_size,
    )


async def _aiter(chunks: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk


async def upload_stream(
    client: Any,
    bucket: str,
    key: str,
    chunks: Iterable[Any] | AsyncIterable[Any],
    *,
    content_type: str,
    metadata: Mapping[str, str],
    part_size: int,
) -> str:
    """Upload the bytes of ``chunks`` (any sizes) to ``key`` as a multipart upload, one part
    of ``part_size`` bytes in memory at a time; abort it if anything fails.

    :return: the new object's ETag
    :raises TypeError: a chunk is not bytes-like (the upload is aborted)
    """
    created = await retrying(
        lambda: client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type, Metadata=dict(metadata)
        )
    )
    upload_id = created["UploadId"]
    parts: list[dict[str, Any]] = []
    completed = False
    try:
        pending = bytearray()

        async def send(data: bytes) -> None:
            number = len(parts) + 1
            response = await retrying(
                lambda: client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})

        async for chunk in _aiter(chunks):
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"a streamed value must yield bytes, got {type(chunk).__name__}")
            pending += chunk
            while len(pending) >= part_size:
                data = bytes(pending[:part_size])
                del pending[:part_size]
                await send(data)
        if pending or not parts:
            await send(bytes(pending))
        response = await retrying(
            lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        )
        completed = True
        return str(response.get("ETag", "")).strip('"')
    finally:
        if not completed:
            with anyio.CancelScope(shield=True):
                try:
                    await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                except Exception:  # the original error is the one to raise
                    pass


async def read_object(client: Any, bucket: str, key: str, chunk_size: int = 1 << 20) -> Any:
    """``GetObject`` of ``key``, its body read in chunks into one buffer; a body that drops
    mid-way is picked up where it stopped (:func:`get_rest`), up to :data:`RESUMES` times.

    :return: ``(body, response)`` with the first response's headers (metadata, type)
    """
    first = await retrying(lambda: client.get_object(Bucket=bucket, Key=key))
    response: dict[str, Any] | None = first
    chunks: list[bytes] = []
    received = 0
    for attempt in range(RESUMES + 1):
        assert response is not None
        stream = response["Body"]
        try:
            async for chunk in stream.iter_chunks(chunk_size):
                chunks.append(chunk)
                received += len(chunk)
            break
        except DROPPED:
            if attempt == RESUMES:
                raise
        finally:
            stream.close()
        response = await get_rest(client, bucket, key, received, first.get("ETag"))
        if response is None:
            break  # it dropped just at the end: nothing is left
    return b"".join(chunks), first
