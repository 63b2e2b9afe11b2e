"""Records of one S3 object read in order from a position, a chunk at a time.

:class:`RecordStream` holds one open ``GetObject`` body and a small buffer: memory stays at
about one chunk whatever the object's size. A plain object is opened at a byte offset with a
ranged GET (``Range: bytes=<offset>-``); a gzipped one cannot be entered in the middle, so it
is decompressed from its start and the lines before the position are skipped (only when a
read resumes from a checkpoint; a stream kept open between pages is simply continued).

A record is a line (``\\n``-terminated, a trailing ``\\r`` dropped), or for CSV as many lines
as it takes to close the quotes a record opened (a quoted field may hold newlines).
"""

from __future__ import annotations

import zlib
from typing import Any

from ._client import error_code, retrying

__all__ = ["RecordStream"]

_CHUNK = 256 * 1024


class RecordStream:
    """The records of object ``key`` from byte ``offset`` (plain) or line ``line`` (gzip).

    :param quote: for CSV, the quote character (records may span lines); ``None`` for lines
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
        quote: bytes | None = None,
        chunk_size: int = _CHUNK,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.gzip = gzip
        self.quote = quote
        self.chunk_size = chunk_size
        #: bytes of the object (decompressed, for gzip) before the next record
        self.offset = 0 if gzip else offset
        #: lines before the next record
        self.line = line
        self._skip = line if gzip else 0
        self._start = 0 if gzip else offset
        self._body: Any = None
        self._chunks: Any = None
        self._buffer = bytearray()
        self._pos = 0
        self._eof = False
        self._inflater: Any = None
        self.finished = False

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
        self._chunks = self._body.iter_chunks(self.chunk_size)
        if self.gzip:
            self._inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header
        while self._skip:
            line = await self._raw_line()
            if line is None:
                break
            self._skip -= 1

    async def _fill(self) -> bool:
        """Read one more chunk into the buffer; ``False`` at the end of the object."""
        if self._eof:
            return False
        if self._body is None:
            await self._open()
            # Skipping lines (gzip) may have read data, or the whole object: scan again.
            return self._pos < len(self._buffer) or not self._eof
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                if self._inflater is not None:
                    self._buffer += self._inflater.flush()
                return False
            if self._pos > len(self._buffer) // 2:
                del self._buffer[: self._pos]
                self._pos = 0
            if self._inflater is None:
                self._buffer += chunk
                return True
            data = chunk
            while data:
                self._buffer += self._inflater.decompress(data)
                data = self._inflater.unused_data
                if data:  # a concatenated gzip member starts
                    self._inflater = zlib.decompressobj(wbits=47)
            return True

    async def _raw_line(self) -> bytes | None:
        """The next line with its ``\\n`` (the last may lack one), or ``None`` at the end."""
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                line = bytes(self._buffer[self._pos : end + 1])
                self._pos = end + 1
                return line
            if not await self._fill():
                if self._pos < len(self._buffer):
                    line = bytes(self._buffer[self._pos :])
                    self._pos = len(self._buffer)
                    return line
                return None

    async def next_record(self) -> bytes | None:
        """The next record without its line ending, or ``None`` at the end of the object.

        Advances :attr:`offset` and :attr:`line` past it.
        """
        line = await self._raw_line()
        if line is None:
            self.finished = True
            return None
        consumed, lines = len(line), 1
        if self.quote is not None:
            quotes = line.count(self.quote)
            while quotes % 2:
                more = await self._raw_line()
                if more is None:
                    break
                line += more
                consumed += len(more)
                lines += 1
                quotes += more.count(self.quote)
        self.offset += consumed
        self.line += lines
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def at(self, offset: int, line: int) -> bool:
        """Whether the stream's next record is the one at (``offset``, ``line``)."""
        if self.gzip:
            return self.line == line
        return self.offset == offset

    def close(self) -> None:
        """Release the response body (the connection is dropped if it was not read out)."""
        body, self._body = self._body, None
        if body is not None:
            body.close()
