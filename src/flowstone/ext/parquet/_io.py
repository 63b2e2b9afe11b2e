"""``ParquetIOManager``: asset values as Parquet files, registered as the ``parquet`` IO manager.

Layout and key encoding: :mod:`._layout`; values: :mod:`._values`; local and S3 writes:
:mod:`._storage`. Every pyarrow call runs in a worker thread
(``anyio.to_thread.run_sync``), so the event loop is never blocked by Parquet I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import pyarrow as pa
import pyarrow.parquet as pq

from flowstone import ConfigurationError, StorageError, ValueNotFoundError
from flowstone.protocols import IOContext

from ._layout import encode_segment, parse_value_path, value_path
from ._storage import BucketNotFoundError, open_location
from ._values import describe_schema, kind_of, loaded, to_arrow, where

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping

    from ._values import ValueKind

__all__ = ["LOAD_OPTIONS", "ParquetIOManager"]

T = TypeVar("T")

#: The load options the manager knows (``fs.load(asset, options={...})``).
LOAD_OPTIONS = frozenset({"columns"})

# A reader's batches are gathered into row groups of about this size before they are
# written (one row group per small batch makes a file slow to read).
_ROW_GROUP_ROWS = 1 << 20
_ROW_GROUP_BYTES = 64 << 20


class ParquetIOManager:
    """Stores asset values as Parquet files under a local directory or an S3 prefix.

    ``ParquetIOManager("./data/tables")`` or ``ParquetIOManager("s3://lake/tables")``;
    register it as an IO manager (``fs.Runtime(io_managers={"parquet": ...})``) and name
    it on an asset (``@fs.asset(io_manager="parquet")``).

    - **Values**: ``pyarrow.Table`` and ``pyarrow.RecordBatch`` (loaded as a Table);
      ``pyarrow.RecordBatchReader``, written batch by batch as it is read (in row groups of
      up to 2**20 rows or 64 MiB, so memory stays bounded); ``pandas.DataFrame`` when
      pandas is installed (loaded back as a DataFrame; pandas is never imported
      otherwise). Anything else raises :class:`~flowstone.StorageError` naming the asset
      and partition before anything is written.
    - **Layout** (hive style): ``root/<asset>/partition=<key>/part-0.parquet`` for a
      partition, ``root/<asset>/data.parquet`` for an unpartitioned value; names and keys
      are percent-encoded UTF-8 (``eu/west`` → ``eu%2Fwest``), as
      :mod:`flowstone.ext.parquet` documents.
    - **Atomic**: a value replaces the previous one whole or not at all (locally a temporary
      file, ``fsync``, ``os.replace``; on S3 a Table is encoded in memory and uploaded in
      one go, a reader's batches go to a temporary key copied onto the value's key).
    - **Record metadata**: ``store`` returns ``{"parquet": {"path", "rows", "bytes",
      "schema"}}`` (``schema``: one ``{"name", "type", "nullable"}`` per column), which
      the run puts on the materialization record.
    - **Column subsets**: ``await fs.load(orders, "2025-01-02", options={"columns":
      ["id", "total"]})`` reads only those columns.

    :param root: a local directory (created when first written) or ``s3://bucket/prefix``
    :param endpoint_url: for ``s3://`` roots, the S3 endpoint (MinIO, a test server);
        default ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` from the environment, else AWS
    :param s3_options: further ``pyarrow.fs.S3FileSystem`` arguments (``region``,
        ``access_key``, ``secret_key``, ``session_token``, …); credentials otherwise come
        from the usual AWS environment variables and files
    :param write_options: ``pyarrow.parquet.ParquetWriter`` arguments (``compression``,
        ``use_dictionary``, …)
    :raises ConfigurationError: a bad root, endpoint or option
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        endpoint_url: str | None = None,
        s3_options: Mapping[str, Any] | None = None,
        write_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._location = open_location(root, endpoint_url=endpoint_url, s3_options=s3_options)
        self._write_options: dict[str, Any] = dict(write_options or {})

    @property
    def root(self) -> str:
        """The root as given (a local path or an ``s3://`` URI)."""
        return self._location.uri

    def __repr__(self) -> str:
        return f"ParquetIOManager({self._location.uri!r})"

    # -- the IOManager protocol ------------------------------------------------------

    async def store(self, context: IOContext, value: Any) -> dict[str, Any]:
        """Write ``value`` for (asset, partition), replacing any previous value atomically.

        :return: ``{"parquet": {...}}``: where it is, its rows, bytes and schema
        :raises StorageError: the value is not one the manager stores (nothing is written),
            or writing failed (the previous value is left as it was)
        """
        kind = kind_of(context, value)
        relative = value_path(context.asset, context.partition)
        return await self._call(
            context, "store", lambda: self._write(context, relative, value, kind)
        )

    async def load(self, context: IOContext) -> Any:
        """Read the value of (asset, partition): a ``pyarrow.Table`` (a DataFrame if one was
        stored). ``context.options["columns"]`` reads only those columns, in that order.

        :raises ValueNotFoundError: nothing is stored
        :raises ConfigurationError: an unknown option, or ``columns`` not a list of names
        :raises StorageError: reading failed, or a column is not in the stored table
        """
        columns = _columns_option(context)
        path = self._location.path(value_path(context.asset, context.partition))
        filesystem = self._location.filesystem

        def read() -> Any:
            try:
                table = pq.read_table(path, columns=columns, filesystem=filesystem)
            except FileNotFoundError:
                self._location.check_bucket()
                raise
            except pa.ArrowInvalid as exc:
                if columns is None:
                    raise
                present = pq.read_schema(path, filesystem=filesystem).names
                unknown = [c for c in columns if c not in present]
                if not unknown:
                    raise
                raise StorageError(
                    f"{where(context)}: no column {', '.join(map(repr, unknown))} in the "
                    f"stored table (its columns: {', '.join(present)})"
                ) from exc
            return loaded(table)

        return await self._call(context, "load", read)

    async def exists(self, context: IOContext) -> bool:
        """Whether a value is stored for (asset, partition)."""
        relative = value_path(context.asset, context.partition)
        return await self._call(context, "check", lambda: self._location.exists(relative))

    async def delete(self, context: IOContext) -> None:
        """Delete the value of (asset, partition); a missing value is not an error."""
        relative = value_path(context.asset, context.partition)
        await self._call(context, "delete", lambda: self._location.delete(relative))

    async def list_partitions(self, asset: str) -> list[str | None]:
        """The partition keys with a stored value, sorted (``None`` for the unpartitioned
        value, first)."""
        try:
            directory = encode_segment(asset)
        except UnicodeEncodeError:
            return []

        def listing() -> list[str | None]:
            keys: list[str] = []
            unpartitioned = False
            for relative in self._location.files_under(directory):
                is_value, key = parse_value_path(relative)
                if not is_value:
                    continue
                if key is None:
                    unpartitioned = True
                else:
                    keys.append(key)
            found: list[str | None] = [None] if unpartitioned else []
            return found + sorted(keys)

        return await self._call(IOContext(asset), "list partitions", listing)

    # -- helpers ---------------------------------------------------------------------

    async def _call(self, context: IOContext, action: str, work: Callable[[], T]) -> T:
        """Run ``work`` in a worker thread, mapping pyarrow and OS errors to flowstone's."""
        try:
            return await anyio.to_thread.run_sync(work)
        except (StorageError, ConfigurationError):
            raise
        except FileNotFoundError as exc:
            if action == "load" and not isinstance(exc, BucketNotFoundError):
                raise ValueNotFoundError(context.asset, context.partition) from None
            error: Exception = exc
        except Exception as exc:
            error = exc
        address = self._location.address(value_path(context.asset, context.partition))
        raise StorageError(
            f"{where(context)}: parquet: could not {action} {address}: "
            f"{type(error).__name__}: {error}"
        ) from error

    def _write(
        self, context: IOContext, relative: str, value: Any, kind: ValueKind
    ) -> dict[str, Any]:
        data = to_arrow(context, value, kind)
        options = self._write_options
        rows = 0

        def write(sink: pa.NativeFile) -> None:
            nonlocal rows
            if isinstance(data, pa.Table):
                pq.write_table(data, sink, **options)
                rows = data.num_rows
                return
            with pq.ParquetWriter(sink, data.schema, **options) as writer:
                pending: list[pa.RecordBatch] = []
                pending_rows = pending_bytes = 0
                for batch in data:
                    pending.append(batch)
                    pending_rows += batch.num_rows
                    pending_bytes += batch.nbytes
                    if pending_rows >= _ROW_GROUP_ROWS or pending_bytes >= _ROW_GROUP_BYTES:
                        writer.write_table(pa.Table.from_batches(pending, data.schema))
                        rows += pending_rows
                        pending, pending_rows, pending_bytes = [], 0, 0
                if pending:
                    writer.write_table(pa.Table.from_batches(pending, data.schema))
                    rows += pending_rows

        size = self._location.write(relative, write, in_memory=isinstance(data, pa.Table))
        return {
            "parquet": {
                "path": self._location.address(relative),
                "rows": rows,
                "bytes": size,
                "schema": describe_schema(data.schema),
            }
        }


def _columns_option(context: IOContext) -> list[str] | None:
    options = context.options
    if not options:
        return None
    unknown = sorted(set(options) - LOAD_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where(context)}: the parquet IO manager has no load option "
            f"{', '.join(map(repr, unknown))} (it knows: {', '.join(sorted(LOAD_OPTIONS))})"
        )
    columns = options.get("columns")
    if columns is None:
        return None
    if isinstance(columns, str) or not _is_names(columns):
        raise ConfigurationError(
            f"{where(context)}: load option 'columns' must be a list of column names, "
            f"got {columns!r}"
        )
    return list(columns)


def _is_names(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(c, str) for c in value)
