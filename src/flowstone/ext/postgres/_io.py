"""``PostgresIOManager``: asset values in PostgreSQL, registered as the ``postgres`` IO manager.

Values are stored by (asset, partition) in the store's ``asset_values`` table, as
:mod:`._codec` describes (JSONB, Arrow IPC, bytes, pickle on request), or as rows in a
table of your own (table mode, :mod:`._tables`). A value that cannot be stored raises
:class:`~flowstone.StorageError` naming the asset, before anything is written.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flowstone import ConfigurationError, StorageError, ValueNotFoundError
from flowstone.protocols import (
    COMPRESSION_THRESHOLD,
    compression_for_asset,
    resolve_compression,
)

from ._buffer import PendingValue
from ._codec import compressed, decode, encode, where
from ._sql import has_nul, partition_id, quote_ident
from ._tables import (
    TableSpec,
    plan_table_write,
    pvalue,
    qualified_from,
    read_table,
    table_exists,
    write_table,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flowstone.protocols import IOContext

    from ._records import ValueWriter
    from ._sql import Connection

__all__ = ["PostgresIOManager", "TableSpec"]


class PostgresIOManager:
    """Stores asset values in PostgreSQL by (asset, partition).

    Formats, chosen by the value: JSON-able values as ``jsonb`` (``jsonb`` does not keep a
    dict's key order; the rare value ``jsonb`` would alter, and a value holding tuples, is
    kept as exact JSON text, so tuples load back as tuples); ``pyarrow.Table``/
    ``RecordBatch`` as Arrow IPC; ``bytes`` as ``bytea``; anything else (a set, a non-string
    key, a string with a lone surrogate, a value holding itself, an int too long for text,
    nesting over 500 levels: :func:`flowstone.protocols.check_json`) only with
    ``allow_pickle=True``, otherwise :class:`~flowstone.StorageError` names the asset
    before anything is written.

    **Table mode** writes a list of dicts or an Arrow table as rows of a table of yours,
    with a partition column (``''`` for the unpartitioned value): asset metadata
    ``{"table": "orders"}`` (or ``"schema.table"``, a mapping of :class:`TableSpec` fields,
    a :class:`TableSpec`), or ``tables={"asset": ...}`` here. ``write="replace"`` (default)
    swaps the partition's rows in one transaction; ``write="upsert"`` (with ``key=``) inserts
    or updates by (partition, key columns) and keeps the partition's other rows. A missing
    table is created with inferred column types (primary key (partition, key) when ``key``
    is given); an existing one must have every column written. Names are validated and
    quoted. Loading returns the partition's rows (in ``key`` order when given) as the type
    stored.

    ``PostgresStore`` creates one and registers it as ``postgres``; build one yourself for a
    second configuration (say, with ``tables=``) and register it under another name.

    :param store: the store whose pool and schema it uses
    :param allow_pickle: pickle values no other format holds (trusted data only)
    :param tables: asset names mapped to table-mode specs (a name, ``"schema.table"``, a
        mapping of :class:`TableSpec` fields, or a spec)
    :param compression: compress values whose stored form has at least
        ``compression_threshold`` bytes: ``"zlib"``, ``"zstd"`` (needs ``zstandard``),
        ``"auto"`` / ``True`` (zstd when installed, else zlib); default off. An asset
        overrides it with ``metadata={"compression": ...}`` (``None`` turns it off). The
        codec is recorded in the value's format, so loading never guesses
    :param compression_threshold: the smallest value, in bytes, that is compressed
        (default 64 KiB)
    :raises ConfigurationError: no store, an invalid table spec, or an unknown codec
    """

    def __init__(
        self,
        store: ValueWriter | None = None,
        *,
        allow_pickle: bool = False,
        tables: Mapping[str, str | TableSpec | Mapping[str, Any]] | None = None,
        compression: bool | str | None = None,
        compression_threshold: int = COMPRESSION_THRESHOLD,
    ) -> None:
        if store is None:
            raise ConfigurationError(
                "the postgres IO manager needs a PostgresStore: use "
                "fs.Runtime(store=PostgresStore(dsn)), which registers it"
            )
        self._store = store
        self.allow_pickle = allow_pickle
        #: The codec values are compressed with (``None``: off), unless an asset says.
        self.compression = resolve_compression(compression, "PostgresIOManager")
        if compression_threshold < 0:
            raise ConfigurationError(
                f"PostgresIOManager: compression_threshold must be at least 0, got "
                f"{compression_threshold!r}"
            )
        self.compression_threshold = compression_threshold
        self._tables: dict[str, TableSpec] = {}
        for asset, spec in (tables or {}).items():
            try:
                self._tables[asset] = TableSpec.coerce(spec)
            except ValueError as exc:
                raise ConfigurationError(f"asset {asset!r}: table mode: {exc}") from None

    def __repr__(self) -> str:
        return f"PostgresIOManager(schema={self._store.schema!r})"

    # -- the IOManager protocol ------------------------------------------------------

    async def store(self, context: IOContext, value: Any) -> None:
        """Store ``value`` for (asset, partition), replacing any previous value atomically.

        :raises StorageError: the value cannot be stored (nothing is written), or the
            database failed
        """
        store = self._store
        if has_nul(context.asset, context.partition):
            raise StorageError(f"{where(context)}: PostgreSQL text cannot hold NUL characters")
        spec = self._table_spec(context)
        if spec is not None:
            plan = plan_table_write(context, spec, value)
            await write_table(store, context, plan)
            return
        fmt, text, data = encode(context, value, allow_pickle=self.allow_pickle)
        fmt, text, data = compressed(
            fmt, text, data, self._codec(context), self.compression_threshold
        )
        pending = PendingValue(
            asset=context.asset,
            partition=context.partition,
            partition_id=partition_id(context.partition),
            format=fmt,
            json_text=text,
            data=data,
            run_id=context.run_id,
        )
        await store.write_value(pending, lambda: f"store {where(context)}")

    def compression_for(self, asset: str, metadata: Mapping[str, Any]) -> str | None:
        """The codec values (and durable scatter results) of ``asset`` are compressed
        with: its ``metadata["compression"]`` when set, else this manager's.

        :raises ConfigurationError: the asset names an unknown codec
        """
        return compression_for_asset(self.compression, asset, metadata)

    def _codec(self, context: IOContext) -> str | None:
        return self.compression_for(context.asset, context.metadata)

    async def load(self, context: IOContext) -> Any:
        """Load the stored value.

        :raises ValueNotFoundError: nothing is stored for (asset, partition)
        """
        store = self._store
        pid = partition_id(context.partition)
        pending = store.pending_value(context.asset, context.partition)
        if pending is not None:
            return decode(
                context,
                pending.format,
                pending.json_text,
                pending.data,
                allow_pickle=self.allow_pickle,
            )
        sql = store.queries.load_value
        row = await store.call(
            f"load {where(context)}", lambda conn: conn.fetchrow(sql, context.asset, pid)
        )
        if row is None:
            raise ValueNotFoundError(context.asset, context.partition)
        fmt = row["format"]
        if fmt == "table":
            return await read_table(
                store, context, json.loads(row["value_json"]), row["value_bytes"]
            )
        return decode(
            context, fmt, row["value_json"], row["value_bytes"], allow_pickle=self.allow_pickle
        )

    async def exists(self, context: IOContext) -> bool:
        """Whether a value is stored for (asset, partition)."""
        store = self._store
        pid = partition_id(context.partition)
        if store.pending_value(context.asset, context.partition) is not None:
            return True
        sql = store.queries.value_exists
        found = await store.call(
            f"check {where(context)}", lambda conn: conn.fetchval(sql, context.asset, pid)
        )
        return bool(found)

    async def delete(self, context: IOContext) -> None:
        """Delete the stored value (in table mode, the partition's rows too); a missing value
        is not an error."""
        store = self._store
        pid = partition_id(context.partition)
        async with store.value_write_in_order(context.asset, context.partition):
            sql = store.queries.delete_value

            async def delete(conn: Connection) -> None:
                async with conn.transaction():
                    row = await conn.fetchrow(sql, context.asset, pid)
                    if row is not None and row["format"] == "table":
                        spec = json.loads(row["value_json"])
                        table = qualified_from(spec)
                        column = quote_ident(spec["partition_column"])
                        if await table_exists(conn, table):
                            await conn.execute(
                                f"DELETE FROM {table} WHERE {column} = $1",
                                pvalue(context.partition),
                            )

            await store.call(f"delete {where(context)}", delete)

    async def list_partitions(self, asset: str) -> list[str | None]:
        """Partition keys with a stored value (``None`` for the unpartitioned value)."""
        store = self._store
        sql = store.queries.list_partitions
        rows = await store.call(
            f"list the partitions of asset {asset!r}", lambda conn: conn.fetch(sql, asset)
        )
        found: dict[str, str | None] = {
            partition_id(r["partition_key"]): r["partition_key"] for r in rows
        }
        found.update(store.pending_partitions(asset))
        return sorted(found.values(), key=lambda p: (p is not None, p or ""))

    # -- helpers -----------------------------------------------------------------------

    def _table_spec(self, context: IOContext) -> TableSpec | None:
        raw = context.metadata.get("table") if context.metadata else None
        if raw is None:
            return self._tables.get(context.asset)
        try:
            return TableSpec.coerce(raw)
        except ValueError as exc:
            raise StorageError(f"{where(context)}: table mode: {exc}") from None
