"""Where the files go: a local directory or an S3 prefix, and how a file is replaced.

Everything here blocks; the IO manager calls it in a worker thread.

- **Local**: a value is written to a temporary file in its own directory
  (``.part-0.parquet.<random>.tmp``), flushed to disk (``fsync``), then moved over the old
  value with ``os.replace`` and the directory synced: a reader sees the old file or the new
  one, and a crash leaves at most a temporary file behind.
- **S3**: an object appears whole or not at all, but a stream pyarrow has begun cannot be
  abandoned (closing it completes the upload with what was written). A value already in
  memory (a Table) is therefore encoded in memory first and uploaded to its key in one
  write, which either completes or leaves the old object. A streamed value (a
  ``RecordBatchReader``, which may fail halfway) is uploaded to a temporary key beside its
  own, then copied onto its key in one server-side ``CopyObject`` and the temporary key
  deleted; a failed write deletes the temporary key and leaves the old value as it was. (``CopyObject`` copies up to 5 GiB in one request: a
  bigger value cannot be stored this way.) pyarrow keeps a deleted file's "directory" by
  leaving an empty ``partition=.../`` marker object; it holds no value and is not listed.

pyarrow's S3 file system was measured against aioboto3 on a moto server (a 1,000,000-row
table, 12 MiB): aioboto3 ``put_object`` of the file serialized in memory was faster to
store there (moto handles one request better than a multipart upload), loads were on a par.
pyarrow's is used: it streams a ``RecordBatchReader`` in bounded memory (multipart, in its
own I/O threads), reads column subsets with ranged GETs, and needs no other dependency.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from flowstone import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["BucketNotFoundError", "Location", "endpoint_from_env", "open_location"]


class BucketNotFoundError(FileNotFoundError):
    """The root's S3 bucket does not exist (told apart from a value that does not)."""


def endpoint_from_env() -> str | None:
    """The S3 endpoint the environment names: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _temporary_name(path: str) -> str:
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}.{secrets.token_hex(8)}.tmp"


@dataclass(frozen=True, slots=True)
class Location:
    """A root on a file system: where values are and how one is replaced.

    :param filesystem: the pyarrow file system
    :param base: the root as a path of that file system (``/data/tables``, ``bucket/prefix``)
    :param local: whether it is the local file system (atomic ``os.replace``)
    :param uri: the root as users wrote it, for messages and metadata
    """

    filesystem: pafs.FileSystem
    base: str
    local: bool
    uri: str

    def path(self, relative: str) -> str:
        """The file system path of ``relative`` (a ``/``-separated path under the root)."""
        return f"{self.base}/{relative}" if self.base else relative

    def address(self, relative: str) -> str:
        """``relative`` as a full address: a local path or an ``s3://`` URI."""
        return self.path(relative) if self.local else f"s3://{self.path(relative)}"

    def write(
        self, relative: str, write: Callable[[pa.NativeFile], None], *, in_memory: bool = False
    ) -> int:
        """Replace the file at ``relative`` with what ``write`` writes to the stream it gets.

        :param in_memory: on S3, have ``write`` write to memory and upload the whole file
            to its key in one go (no temporary key, no copy); for values already in memory,
            whose Parquet file is rarely bigger than they are
        :return: the bytes written
        :raises Exception: whatever ``write`` or the file system raised; the old file, if
            any, is then as it was and the temporary file is gone
        """
        final = self.path(relative)
        if in_memory and not self.local:
            buffer = pa.BufferOutputStream()
            write(buffer)
            data = buffer.getvalue()
            # One write of a whole file: an upload that fails is never completed.
            with self.filesystem.open_output_stream(final) as sink:
                sink.write(data)
            return int(data.size)
        temporary = _temporary_name(final)
        if self.local:
            _make_dirs(os.path.dirname(final))
        try:
            with self.filesystem.open_output_stream(temporary) as sink:
                write(sink)
                size = sink.tell()
            if self.local:
                _fsync_file(temporary)
                os.replace(temporary, final)
                _fsync_dir(os.path.dirname(final))
            else:
                self.filesystem.move(temporary, final)
        except BaseException:
            self._discard(temporary)
            raise
        return int(size)

    def _discard(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - best effort; the original error travels
            pass

    def exists(self, relative: str) -> bool:
        """Whether a file is at ``relative``.

        :raises BucketNotFoundError: the root's bucket does not exist
        """
        info = self.filesystem.get_file_info(self.path(relative))
        if info.type == pafs.FileType.File:
            return True
        self.check_bucket()
        return False

    def check_bucket(self) -> None:
        """Raise :class:`BucketNotFoundError` if the root is in an S3 bucket that does not
        exist (called once a file was not found, to say which is missing)."""
        if self.local:
            return
        bucket = self.base.partition("/")[0]
        if self.filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise BucketNotFoundError(f"the bucket {bucket!r} does not exist")

    def delete(self, relative: str) -> None:
        """Delete the file at ``relative`` (and its directory, locally, once empty)."""
        path = self.path(relative)
        try:
            self.filesystem.delete_file(path)
        except FileNotFoundError:
            return
        if self.local and relative.count("/") >= 2:
            try:
                os.rmdir(os.path.dirname(path))
            except OSError:
                pass  # not empty (a temporary file of a write under way): leave it

    def files_under(self, relative: str) -> list[str]:
        """The files under the directory ``relative``, as paths relative to it."""
        top = self.path(relative)
        selector = pafs.FileSelector(top, recursive=True, allow_not_found=True)
        start = len(top) + 1
        return [
            info.path[start:]
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        ]


def _make_dirs(directory: str) -> None:
    """Create ``directory`` and its missing parents, syncing each parent that got a new entry."""
    missing: list[str] = []
    current = directory
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        _fsync_dir(os.path.dirname(path))


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot sync a directory
        pass
    finally:
        os.close(fd)


def open_location(
    root: str | os.PathLike[str],
    *,
    endpoint_url: str | None = None,
    s3_options: Mapping[str, Any] | None = None,
) -> Location:
    """The :class:`Location` of ``root``: a local directory, or an ``s3://bucket/prefix``.

    :param endpoint_url: for ``s3://`` roots, the S3 endpoint (``http://127.0.0.1:9000``);
        default: ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else AWS
    :param s3_options: more ``pyarrow.fs.S3FileSystem`` arguments (``region``,
        ``access_key``, ``secret_key``, …)
    :raises ConfigurationError: an empty root, an ``s3://`` URI without a bucket, another
        URI scheme, S3 options for a local root, or options pyarrow rejects
    """
    text = os.fspath(root)
    if not isinstance(text, str) or not text:
        raise ConfigurationError(
            f"ParquetIOManager: root must be a path or an s3:// URI, got {root!r}"
        )
    scheme = urlsplit(text).scheme if "://" in text else ""
    if not scheme:
        if endpoint_url is not None or s3_options:
            raise ConfigurationError(
                f"ParquetIOManager: endpoint_url and s3_options are for s3:// roots, "
                f"not the local root {text!r}"
            )
        base = os.path.abspath(os.path.expanduser(text)).replace(os.sep, "/").rstrip("/")
        return Location(pafs.LocalFileSystem(), base, local=True, uri=text)
    if scheme != "s3":
        raise ConfigurationError(
            f"ParquetIOManager: root {text!r}: only local paths and s3:// URIs are supported"
        )
    parts = urlsplit(text)
    bucket = parts.netloc
    if not bucket:
        raise ConfigurationError(f"ParquetIOManager: root {text!r} names no bucket")
    prefix = parts.path.strip("/")
    options: dict[str, Any] = dict(s3_options or {})
    endpoint = endpoint_url if endpoint_url is not None else endpoint_from_env()
    if endpoint:
        split = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ConfigurationError(
                f"ParquetIOManager: endpoint_url {endpoint!r} is not an http(s) URL"
            )
        options.setdefault("endpoint_override", split.netloc)
        options.setdefault("scheme", split.scheme)
    try:
        filesystem = pafs.S3FileSystem(**options)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise ConfigurationError(f"ParquetIOManager: root {text!r}: bad S3 options: {exc}") from exc
    base = f"{bucket}/{prefix}" if prefix else bucket
    return Location(filesystem, base, local=False, uri=text)
