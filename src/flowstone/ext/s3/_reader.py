"""``S3ItemReader``: scatter items from the objects under an S3 prefix, resumable by cursor.

Objects are taken in S3's listing order (by key, UTF-8 binary order), listed with
ListObjectsV2 (``StartAfter`` the last object done, following ``NextContinuationToken``
within a page). A cursor is JSON:

- ``{"after": "<key>"}`` — every object up to and including ``<key>`` is read;
- ``{"key": "<key>", "offset": <bytes>, "line": <lines>}`` — inside ``<key>``, the next
  record starts at that byte (plain objects: a ranged GET starts there) or after that many
  lines (gzip: decompressed from the start, that many lines skipped).

Between pages the reader keeps the object's body open, so a scatter reading page after page
streams each object once; a new reader (a resumed process) opens it again at the cursor.
"""

from __future__ import annotations

import csv
import io
import json
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Self

import anyio

from flowstone import ConfigurationError
from flowstone.protocols import ItemPage

from ._client import AwsClient, retrying
from ._errors import S3StorageError, mapped_errors
from ._lines import RecordStream

if TYPE_CHECKING:
    from types import TracebackType

    import aioboto3

__all__ = ["S3ItemReader"]

# ``json.loads`` of bytes sniffs their encoding on every call; decoding to text first and
# calling the decoder directly is a third faster on short lines.
_DECODER = json.JSONDecoder()

Format = Literal["keys", "jsonl", "csv"]
_FORMATS = ("keys", "jsonl", "csv")


class S3ItemReader:
    """An ``ItemReader`` over the objects under an S3 prefix, for ``@scatter(reader=...)``.

    - ``format="keys"``: one item per object, ``{"key", "size", "etag", "last_modified"}``
      (``last_modified`` in ISO 8601);
    - ``format="jsonl"``: one item per line of JSON Lines (blank lines are skipped), across
      all objects in key order;
    - ``format="csv"``: one item per CSV row, a ``dict`` by each object's header row
      (``header=False``: a ``list`` per row, no header); quoted fields may hold newlines.

    Objects are streamed a chunk at a time (never a whole object in memory); ``gzip=True``
    decompresses them. The cursor a page returns (the key and the byte offset, or the line
    for gzip) is what a durable scatter checkpoints, so a run killed mid-way resumes reading
    exactly where it stopped. Throttling (``SlowDown``, 503) is retried with backoff.

    The client is opened on first read and kept until :meth:`aclose` (``async with
    reader``), or until the runtime it is given to closes (``fs.Runtime(plugins=[reader])``):
    one client per runtime, however many scatters read through the reader.

    :param bucket: the bucket
    :param prefix: the key prefix of the objects to read (``"events/2025-01-02/"``)
    :param format: ``"keys"``, ``"jsonl"`` or ``"csv"``
    :param gzip: the objects are gzip-compressed
    :param endpoint_url: the S3 endpoint; default ``AWS_ENDPOINT_URL_S3`` or
        ``AWS_ENDPOINT_URL``, else AWS
    :param region_name: the region; default the environment's (``us-east-1`` if none)
    :param encoding: the text encoding of the lines (default UTF-8)
    :param header: CSV: the first row of each object names the columns
    :param csv_options: CSV: ``csv.reader`` arguments (``delimiter``, ``quotechar``, …)
    :param session: an ``aioboto3.Session`` (a profile, explicit credentials)
    :param client_options: further ``session.client("s3", ...)`` arguments
    :raises ConfigurationError: an unknown format or a bad option
    """

    #: Objects asked for per ListObjectsV2 request (S3 returns at most 1,000).
    list_page_size = 1000

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        format: Format = "jsonl",
        *,
        gzip: bool = False,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        encoding: str = "utf-8",
        header: bool = True,
        csv_options: dict[str, Any] | None = None,
        session: aioboto3.Session | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if format not in _FORMATS:
            raise ConfigurationError(
                f"S3ItemReader: format must be one of {', '.join(_FORMATS)}, got {format!r}"
            )
        if not isinstance(bucket, str) or not bucket or "/" in bucket:
            raise ConfigurationError(f"S3ItemReader: bucket must be a bucket name, got {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix
        self.format: Format = format
        self.gzip = gzip
        self.encoding = encoding
        self.header = header
        self._csv_options = dict(csv_options or {})
        try:
            csv.reader([], **self._csv_options)
        except TypeError as exc:
            raise ConfigurationError(f"S3ItemReader: bad csv_options: {exc}") from exc
        quotechar = self._csv_options.get("quotechar", '"')
        self._quote = quotechar.encode(encoding) if quotechar else None
        self._client = AwsClient(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region_name,
            session=session,
            client_options=client_options,
        )
        self._stream: RecordStream | None = None
        self._headers: dict[str, list[str]] = {}
        self._listed: list[str] = []
        self._listed_from: str | None = None
        self._listed_all = False
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return (
            f"S3ItemReader(bucket={self.bucket!r}, prefix={self.prefix!r}, "
            f"format={self.format!r}, gzip={self.gzip!r})"
        )

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
        """Release the open object, if any, and close the client."""
        self._drop_stream()
        await self._client.aclose()

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    # -- the ItemReader protocol -----------------------------------------------------

    async def count(self) -> int | None:
        """The number of objects for ``format="keys"`` (one listing request per 1,000
        objects); ``None`` for lines and rows, which would need every object read."""
        if self.format != "keys":
            return None
        total = 0
        after: str | None = None
        while True:
            keys, more = await self._list(after, self.list_page_size)
            total += len(keys)
            if not more or not keys:
                return total
            after = keys[-1]["Key"]

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[Any]:
        """Up to ``limit`` items after ``cursor`` (``None``: from the first object).

        :raises S3StorageError: the bucket is missing, the credentials are refused, a
            line is not JSON, or the cursor is not one this reader returned
        """
        position = self._parse_cursor(cursor)
        limit = max(1, limit)
        async with self._lock:
            if self.format == "keys":
                page = await self._read_keys(position.get("after"), limit)
            else:
                page = await self._read_records(position, limit)
        if page.cursor is None:
            self._drop_stream()
        return page

    # -- keys ------------------------------------------------------------------------

    async def _list(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` objects after ``after`` (directory markers left out), and
        whether there may be more."""
        client = await self._client.get()
        found: list[dict[str, Any]] = []
        token: str | None = None
        with mapped_errors("list objects", bucket=self.bucket, key=self.prefix):
            while len(found) < limit:
                args: dict[str, Any] = {
                    "Bucket": self.bucket,
                    "Prefix": self.prefix,
                    "MaxKeys": min(self.list_page_size, limit - len(found)),
                }
                if token:
                    args["ContinuationToken"] = token
                elif after is not None:
                    args["StartAfter"] = after
                page: dict[str, Any] = await retrying(partial(client.list_objects_v2, **args))
                found.extend(o for o in page.get("Contents", ()) if not o["Key"].endswith("/"))
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    return found, False
        return found, True

    async def _read_keys(self, after: str | None, limit: int) -> ItemPage[dict[str, Any]]:
        objects, more = await self._list(after, limit)
        items = [
            {
                "key": o["Key"],
                "size": int(o.get("Size", 0)),
                "etag": str(o.get("ETag", "")).strip('"'),
                "last_modified": o["LastModified"].isoformat() if "LastModified" in o else None,
            }
            for o in objects
        ]
        if not more or not items:
            return ItemPage(items, None)
        return ItemPage(items, json.dumps({"after": items[-1]["key"]}))

    async def _next_key(self, after: str | None) -> str | None:
        """The first object after ``after`` (a listing page is kept between calls)."""
        if after is not None and after in self._listed:
            index = self._listed.index(after) + 1
            if index < len(self._listed):
                return self._listed[index]
            if self._listed_all:
                return None  # that listing went to the end of the prefix
        elif after is None and self._listed and self._listed_from is None:
            return self._listed[0]
        objects, more = await self._list(after, self.list_page_size)
        self._listed = [o["Key"] for o in objects]
        self._listed_from, self._listed_all = after, not more
        return self._listed[0] if self._listed else None

    # -- lines and rows ----------------------------------------------------------------

    async def _read_records(self, position: dict[str, Any], limit: int) -> ItemPage[Any]:
        items: list[Any] = []
        key: str | None = position.get("key")
        after: str | None = position.get("after")
        offset = int(position.get("offset", 0))
        line = int(position.get("line", 0))
        while len(items) < limit:
            if key is None:
                key = await self._next_key(after)
                if key is None:
                    return ItemPage(items, None)
                offset = line = 0
            stream = await self._stream_at(key, offset, line)
            with mapped_errors("read the object", bucket=self.bucket, key=key):
                while len(items) < limit and not stream.finished:
                    first = stream.line
                    if self.format == "jsonl":
                        lines = await stream.take(limit - len(items))
                        items += self._parse_jsonl(stream, lines, first)
                    else:
                        records = await self._csv_records(stream, limit - len(items))
                        items += self._rows(stream, records, first)
            if stream.finished:
                self._drop_stream()
                after, key = key, None
                continue
            offset, line = stream.offset, stream.line
        if key is None:
            return ItemPage(items, json.dumps({"after": after}))
        return ItemPage(items, json.dumps({"key": key, "offset": offset, "line": line}))

    async def _stream_at(self, key: str, offset: int, line: int) -> RecordStream:
        stream = self._stream
        if stream is not None and stream.key == key and stream.at(offset, line):
            return stream
        self._drop_stream()
        client = await self._client.get()
        stream = RecordStream(client, self.bucket, key, offset=offset, line=line, gzip=self.gzip)
        self._stream = stream
        if self.format == "csv" and self.header:
            if offset or line:  # resuming inside an object: its header row, read apart
                await self._header(key)
            else:
                with mapped_errors("read the header row", bucket=self.bucket, key=key):
                    records = await self._csv_records(stream, 1)
                self._headers = {key: self._parse_csv(records[0] if records else b"", key, 1)}
        return stream

    async def _header(self, key: str) -> list[str]:
        header = self._headers.get(key)
        if header is None:
            client = await self._client.get()
            first = RecordStream(client, self.bucket, key, gzip=self.gzip)
            try:
                with mapped_errors("read the header row", bucket=self.bucket, key=key):
                    records = await self._csv_records(first, 1)
            finally:
                first.close()
            header = self._parse_csv(records[0] if records else b"", key, 1)
            self._headers = {key: header}
        return header

    def _parse_jsonl(self, stream: RecordStream, lines: list[bytes], first: int) -> list[Any]:
        decode, encoding = _DECODER.decode, self.encoding
        try:
            return [decode(text.decode(encoding)) for text in lines if text.strip()]
        except (UnicodeDecodeError, ValueError):
            pass
        for number, text in enumerate(lines, first + 1):  # find the line at fault
            try:
                json.loads(text.decode(self.encoding))
            except (UnicodeDecodeError, ValueError) as exc:
                raise S3StorageError(
                    f"line {number} is not JSON: {exc}",
                    bucket=self.bucket,
                    key=stream.key,
                    reason="corrupt",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _csv_records(self, stream: RecordStream, n: int) -> list[bytes]:
        """Up to ``n`` CSV records: lines joined while a quoted field is open."""
        quote = self._quote
        records: list[bytes] = []
        pending: bytes | None = None
        quotes = 0
        lines = await stream.take(n)
        while True:
            for text in lines:
                if pending is None:
                    pending, quotes = text, text.count(quote) if quote else 0
                else:
                    pending += b"\n" + text
                    quotes += text.count(quote) if quote else 0
                if quotes % 2 == 0:
                    records.append(pending)
                    pending = None
            if pending is None:
                return records
            lines = await stream.take(1)  # a record still open at the end of the batch
            if not lines:
                records.append(pending)
                return records

    def _rows(self, stream: RecordStream, records: list[bytes], first: int) -> list[Any]:
        rows = [
            self._parse_csv(record, stream.key, first + 1)
            for record in records
            if record.rstrip(b"\r")
        ]
        if not self.header:
            return rows
        header = self._headers[stream.key]
        return [dict(zip(header, row, strict=False)) for row in rows]

    def _parse_csv(self, record: bytes, key: str, line: int) -> list[str]:
        try:
            text = record.decode(self.encoding)
            return next(csv.reader(io.StringIO(text), **self._csv_options), [])
        except (UnicodeDecodeError, csv.Error) as exc:
            raise S3StorageError(
                f"the CSV record ending on line {line} cannot be read: {exc}",
                bucket=self.bucket,
                key=key,
                reason="corrupt",
            ) from None

    def _parse_cursor(self, cursor: str | None) -> dict[str, Any]:
        if cursor is None:
            return {}
        try:
            position: Any = json.loads(cursor)
        except json.JSONDecodeError:
            position = None
        valid = isinstance(position, dict) and (
            isinstance(position.get("after"), str)
            or (
                self.format != "keys"
                and isinstance(position.get("key"), str)
                and isinstance(position.get("offset"), int)
                and isinstance(position.get("line"), int)
            )
        )
        if not valid:
            raise S3StorageError(
                f"not a cursor this reader returned: {cursor!r}",
                bucket=self.bucket,
                key=self.prefix,
                reason="error",
            )
        result: dict[str, Any] = position
        return result
