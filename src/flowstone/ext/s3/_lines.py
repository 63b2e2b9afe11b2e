"""Records of one S3 object read in order from a position, a chunk at a time.

:class:`RecordStream` holds one open ``GetObject`` body, the complete lines of the last
chunk and the start of the next line: memory stays at about one chunk whatever the
object's size. A plain object is opened at a byte offset with a ranged GET
(``Range: bytes=<offset>-``); a gzipped one cannot be entered in the middle, so it is
decompressed from its start and the lines before the position are skipped (only when a
read resumes from a checkpoint; a stream kept open between pages is simply continued).

Lines are split a chunk at a time (``bytes.split``), not one call per line: reading is
bounded by parsing, not by the loop. A line is ``\\n``-terminated (the last may not be);
for CSV a record is as many lines as it takes to close the quotes it opened (a quoted field
may hold newlines).
"""

from __future__ import annotations

import zlib
from typing import Any

from ._client import DROPPED, RESUMES, error_code, get_rest, retrying

__all__ = ["RecordStream"]

_CHUNK = 256 * 1024
#: Times one object's body may drop and be picked up again before the error is raised.


async def _nothing() -> Any:
    return
    yield  # an async generator that ends at once


class RecordStream:
    """The lines of object ``key`` from byte ``offset`` (plain) or line ``line`` (gzip).

    :attr offset: bytes of the object (decompressed, for gzip) before the next line
    :attr line: lines before the next line
    :attr finished: the object is read to its end
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        key: str,
        *,
        offset: int = 0,
        line: int = 0,
        gzip: bool = False,
        chunk_size: int = _CHUNK,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.gzip = gzip
        self.chunk_size = chunk_size
        self.offset = 0 if gzip else offset
        self.line = line
        self.finished = False
        self._start = 0 if gzip else offset
        self._skip = line if gzip else 0
        self._body: Any = None
        self._chunks: Any = None
        self._inflater: Any = None
        self._lines: list[bytes] = []
        self._next = 0
        self._rest = b""
        self._eof = False
        self._unterminated = False  # the last line of the object has no newline
        self._received = self._start  # raw bytes of the object received so far
        self._etag: str | None = None
        self._resumes = 0

    async def _open(self) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self._start:
            args["Range"] = f"bytes={self._start}-"
        try:
            response = await retrying(lambda: self.client.get_object(**args))
        except Exception as exc:
            if self._start and error_code(exc) == "InvalidRange":
                self._eof = True  # the position is the object's end: nothing is left
                return
            raise
        self._body = response["Body"]
        self._etag = response.get("ETag")
        self._chunks = self._body.iter_chunks(self.chunk_size)
        if self.gzip:
            self._inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
        if self._skip:
            skip, self._skip = self._skip, 0
            line = self.line
            await self.take(skip)  # (all of them, unless the object ends first)
            self.line = line

    def _inflate(self, chunk: bytes) -> bytes:
        parts: list[bytes] = []
        while chunk:
            parts.append(self._inflater.decompress(chunk))
            chunk = self._inflater.unused_data
            if chunk:  # a concatenated gzip member starts
                self._inflater = zlib.decompressobj(wbits=47)
        return b"".join(parts)

    async def _refill(self) -> bool:
        """Split the next chunk into lines; ``False`` once nothing is left."""
        if self._body is None and not self._eof:
            await self._open()
            if self._next < len(self._lines):
                return True
        while not self._eof:
            try:
                chunk = await self._chunks.__anext__()
            except DROPPED as exc:
                await self._pick_up(exc)
                continue
            except StopAsyncIteration:
                self._eof = True
                tail = self._inflater.flush() if self._inflater is not None else b""
                data = self._rest + tail
                self._rest = b""
                if data:
                    lines = data.split(b"\n")
                    last = lines.pop()
                    if last:
                        lines.append(last)
                        self._unterminated = True
                    self._lines, self._next = lines, 0
                    return bool(lines)
                return False
            self._received += len(chunk)
            if self._inflater is not None:
                chunk = self._inflate(chunk)
            if b"\n" not in chunk:
                self._rest += chunk
                continue
            lines = (self._rest + chunk).split(b"\n")
            self._rest = lines.pop()
            self._lines, self._next = lines, 0
            return True
        return False

    async def _pick_up(self, dropped: BaseException) -> None:
        """The body dropped mid-way: GET the rest from the byte where it stopped, if the
        object is still the one being read (``If-Match`` its ETag). A gzip stream goes on
        with the same decompressor, so it needs no skipping either.

        :raises Exception: the drop, after :data:`RESUMES` pick-ups of this object; a
            ``PreconditionFailed`` error when the object was replaced meanwhile
        """
        self._resumes += 1
        if self._resumes > RESUMES:
            raise dropped
        body, self._body = self._body, None
        if body is not None:
            body.close()
        response = await get_rest(self.client, self.bucket, self.key, self._received, self._etag)
        if response is None:
            self._chunks = _nothing()  # it dropped just at the end: nothing is left
            return
        self._body = response["Body"]
        self._chunks = self._body.iter_chunks(self.chunk_size)

    async def take(self, n: int) -> list[bytes]:
        """Up to ``n`` next lines, without their ``\\n``; fewer only at the object's end
        (then :attr:`finished` is set). Advances :attr:`offset` and :attr:`line`."""
        out: list[bytes] = []
        while len(out) < n:
            available = len(self._lines) - self._next
            if available <= 0:
                if not await self._refill():
                    self.finished = True
                    break
                continue
            count = min(n - len(out), available)
            batch = self._lines[self._next : self._next + count]
            self._next += count
            size = sum(map(len, batch)) + count
            if self._unterminated and self._eof and self._next == len(self._lines):
                size -= 1  # the object's last line had no newline
            self.offset += size
            self.line += count
            out += batch
        return out

    def at(self, offset: int, line: int) -> bool:
        """Whether the stream's next line is the one at (``offset``, ``line``)."""
        if self.gzip:
            return self.line == line
        return self.offset == offset

    def close(self) -> None:
        """Release the response body (the connection is dropped if it was not read out)."""
        body, self._body = self._body, None
        if body is not None:
            body.close()
