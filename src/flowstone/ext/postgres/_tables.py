"""Table mode of the ``postgres`` IO manager: rows in a table of your own.

Table mode writes an asset's rows into a table of your own, with a partition column.
Turn it on per asset with metadata ``{"table": "orders"}`` (``"schema.table"`` works, and
a mapping or :class:`TableSpec` gives every option) or for asset names with
``PostgresIOManager(store, tables={"orders": ...})``. The value is a list of dicts or an
Arrow table/record batch. The table is created on first write (column types inferred;
primary key (partition column, key columns) when ``key`` is given), or must already have
every column written. Two write modes:

- ``"replace"`` (default): the partition's rows are deleted and the new rows inserted, in
  one transaction — a reader sees the old rows or the new ones;
- ``"upsert"`` (needs ``key``): rows are inserted or updated by (partition, key columns);
  rows of the partition that are not in the value stay. It needs a unique index on
  (partition column, key columns), which a created table has.

The unpartitioned value uses ``''`` in the partition column. Loading reads the partition's
rows back (ordered by ``key`` when given) as the type that was stored.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowstone import StorageError

from ._codec import is_arrow, pyarrow_module, where
from ._sql import (
    advisory_key,
    partition_id,
    qualified,
    quote_ident,
    validate_column,
    validate_identifier,
)

if TYPE_CHECKING:
    import asyncpg

    from flowstone.protocols import IOContext

    from ._records import ValueWriter
    from ._sql import Connection

__all__ = [
    "TablePlan",
    "TableSpec",
    "plan_table_write",
    "pvalue",
    "qualified_from",
    "read_table",
    "table_exists",
    "write_table",
]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """Where and how table mode writes an asset's rows.

    :param name: the table name
    :param schema: the table's schema (default: the connection's ``search_path``, usually
        ``public``)
    :param key: columns identifying a row within a partition (upserts, ordering on load)
    :param write: ``"replace"`` the partition's rows, or ``"upsert"`` by key
    :param partition_column: the text column holding the partition key
    :param create: create the table when it does not exist
    """

    name: str
    schema: str | None = None
    key: tuple[str, ...] = ()
    write: Literal["replace", "upsert"] = "replace"
    partition_column: str = "partition_key"
    create: bool = True

    def __post_init__(self) -> None:
        validate_identifier(self.name, "table name")
        if self.schema is not None:
            validate_identifier(self.schema, "schema name")
        validate_identifier(self.partition_column, "partition column")
        for column in self.key:
            validate_column(column, "key column")
        if self.write not in ("replace", "upsert"):
            raise ValueError(f"invalid write mode {self.write!r}: use 'replace' or 'upsert'")
        if self.write == "upsert" and not self.key:
            raise ValueError("write='upsert' needs key=[...] columns")
        if self.partition_column in self.key:
            raise ValueError(f"the partition column {self.partition_column!r} cannot be a key")

    @property
    def qualified_name(self) -> str:
        """The quoted table name, schema-qualified when a schema is set."""
        if self.schema is None:
            return quote_ident(self.name)
        return qualified(self.schema, self.name)

    @classmethod
    def coerce(cls, value: str | TableSpec | Mapping[str, Any]) -> TableSpec:
        """A spec from ``"table"``, ``"schema.table"``, a mapping of the fields, or a spec.

        :raises ValueError: an invalid name or option
        """
        if isinstance(value, TableSpec):
            return value
        if isinstance(value, str):
            schema, dot, name = value.rpartition(".")
            return cls(name=name, schema=schema if dot else None)
        if isinstance(value, Mapping):
            options = dict(value)
            name = options.pop("name", None) or options.pop("table", None)
            if not isinstance(name, str):
                raise ValueError(f"a table spec needs a 'name', got {value!r}")
            schema, dot, bare = name.rpartition(".")
            if dot and "schema" not in options:
                options["schema"] = schema
                name = bare
            key = options.pop("key", ())
            keys = (key,) if isinstance(key, str) else tuple(key)
            unknown = set(options) - {"schema", "write", "partition_column", "create"}
            if unknown:
                raise ValueError(f"unknown table options {sorted(unknown)}")
            return cls(name=name, key=keys, **options)
        raise ValueError(f"a table spec is a name, a mapping or a TableSpec, got {value!r}")


@dataclass(frozen=True, slots=True)
class TablePlan:
    """Rows checked and normalised for one table-mode write."""

    spec: TableSpec
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    types: dict[str, str]
    returns: str
    arrow_schema: bytes | None


def plan_table_write(context: IOContext, spec: TableSpec, value: Any) -> TablePlan:
    """Check and normalise rows for table mode.

    :raises StorageError: the rows cannot be written (naming the asset), before any write
    """
    here = where(context)
    arrow_schema: bytes | None = None
    if is_arrow(value):
        pa = pyarrow_module(context)
        if not isinstance(value, (pa.Table, pa.RecordBatch)):
            raise StorageError(f"{here}: table mode cannot write a {type(value).__qualname__}")
        names = list(value.schema.names)
        returns = "arrow" if isinstance(value, pa.Table) else "arrow_batch"
        arrow_schema = value.schema.serialize().to_pybytes()
        records = value.to_pylist()
        try:
            types = {n: _arrow_type(value.schema.field(n).type, pa) for n in names}
        except TypeError as exc:
            raise StorageError(f"{here}: table mode: {exc}") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(r, Mapping) for r in value):
        records = [dict(r) for r in value]
        seen: dict[str, None] = {}
        for record in records:
            seen.update(dict.fromkeys(record))
        names = list(seen)
        returns = "rows"
        types = {}
    else:
        raise StorageError(
            f"{here}: table mode needs a list of dicts or an Arrow table, "
            f"got {type(value).__qualname__}"
        )
    try:
        for name in names:
            validate_column(name)
    except ValueError as exc:
        raise StorageError(f"{here}: table mode: {exc}") from None
    if spec.partition_column in names:
        raise StorageError(
            f"{here}: the rows have a column {spec.partition_column!r}, which is the table's "
            "partition column; rename it or set partition_column"
        )
    missing_keys = [k for k in spec.key if k not in names]
    if missing_keys and records:
        raise StorageError(f"{here}: key columns {missing_keys} are not in the rows")
    rows = [tuple(record.get(n) for n in names) for record in records]
    if spec.key and rows:
        positions = [names.index(k) for k in spec.key]
        keys_seen: set[tuple[Any, ...]] = set()
        for row in rows:
            key = tuple(row[i] for i in positions)
            if any(part is None for part in key):
                raise StorageError(
                    f"{here}: a row has no value for key {dict(zip(spec.key, key, strict=True))}"
                )
            hashable = tuple(json.dumps(k, default=str, sort_keys=True) for k in key)
            if hashable in keys_seen:
                raise StorageError(f"{here}: duplicate key {dict(zip(spec.key, key, strict=True))}")
            keys_seen.add(hashable)
    if not types:
        try:
            types = {n: _infer_type([row[i] for row in rows]) for i, n in enumerate(names)}
        except TypeError as exc:
            raise StorageError(f"{here}: table mode: {exc}") from None
    return TablePlan(spec, tuple(names), rows, types, returns, arrow_schema)


def _infer_type(values: Sequence[Any]) -> str:
    kinds: set[str] = set()
    for value in values:
        if value is None:
            continue
        kinds.add(_python_type(value))
    if not kinds:
        return "text"
    if kinds == {"bigint", "double precision"}:
        return "double precision"
    if kinds <= {"bigint", "numeric"}:
        return "numeric" if "numeric" in kinds else "bigint"
    if len(kinds) > 1:
        raise TypeError(f"a column mixes {sorted(kinds)} values")
    return kinds.pop()


def _python_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -(2**63) <= value < 2**63 else "numeric"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, str):
        return "text"
    if isinstance(value, decimal.Decimal):
        return "numeric"
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, dt.timedelta):
        return "interval"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytea"
    if isinstance(value, uuid.UUID):
        return "uuid"
    if isinstance(value, (dict, list, tuple)):
        return "jsonb"
    raise TypeError(f"no column type for a {type(value).__qualname__} value")


def _arrow_type(arrow_type: Any, pa: Any) -> str:
    types = pa.types
    checks: list[tuple[Any, str]] = [
        (types.is_boolean, "boolean"),
        (types.is_uint64, "numeric"),
        (types.is_integer, "bigint"),
        (types.is_float32, "real"),
        (types.is_floating, "double precision"),
        (types.is_decimal, "numeric"),
        (lambda t: types.is_string(t) or types.is_large_string(t), "text"),
        (
            lambda t: (
                types.is_binary(t) or types.is_large_binary(t) or types.is_fixed_size_binary(t)
            ),
            "bytea",
        ),
        (lambda t: types.is_timestamp(t) and t.tz is not None, "timestamptz"),
        (types.is_timestamp, "timestamp"),
        (types.is_date, "date"),
        (types.is_time, "time"),
        (types.is_duration, "interval"),
        (types.is_null, "text"),
        (
            lambda t: (
                types.is_list(t) or types.is_large_list(t) or types.is_struct(t) or types.is_map(t)
            ),
            "jsonb",
        ),
    ]
    for check, name in checks:
        if check(arrow_type):
            return name
    raise TypeError(f"no column type for Arrow type {arrow_type}")


def pvalue(partition: str | None) -> str:
    """The partition column's value: ``''`` for the unpartitioned value."""
    return "" if partition is None else partition


def qualified_from(spec: Mapping[str, Any]) -> str:
    """The quoted table name of a stored table-mode description."""
    schema = spec.get("schema")
    return qualified(schema, spec["table"]) if schema else quote_ident(spec["table"])


async def table_exists(conn: Connection, table: str) -> bool:
    """Whether ``table`` (quoted, maybe qualified) exists."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def _columns_of(conn: Connection, table: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT attname, format_type(atttypid, atttypmod) AS type FROM pg_attribute "
        "WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return {r["attname"]: r["type"] for r in rows}


def _is_json_type(type_name: str) -> bool:
    return type_name in ("json", "jsonb")


async def write_table(store: ValueWriter, context: IOContext, plan: TablePlan) -> None:
    """Write a planned table-mode value and its description, in one transaction."""
    spec = plan.spec
    table = spec.qualified_name
    pcol = spec.partition_column
    pid = partition_id(context.partition)
    values_sql = store.queries.upsert_value
    lock = advisory_key("flowstone.table", table)

    async def write(conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *lock)
            columns = await _columns_of(conn, table)
            if not columns and plan.columns:
                if not spec.create:
                    raise StorageError(f"{where(context)}: table {table} does not exist")
                await conn.execute(_create_table_sql(table, spec, plan))
                columns = await _columns_of(conn, table)
            if columns:
                missing = [c for c in (pcol, *plan.columns) if c not in columns]
                if missing:
                    raise StorageError(
                        f"{where(context)}: table {table} has no column(s) {missing}"
                    )
            json_columns = [c for c in plan.columns if _is_json_type(columns.get(c, ""))]
            rows = _json_cells(plan, json_columns)
            if columns:
                try:
                    await _write_rows(
                        conn, table, spec, plan.columns, rows, pvalue(context.partition)
                    )
                except (TypeError, ValueError, OverflowError) as exc:
                    # Client-side encoding: a value does not fit its column's type.
                    raise StorageError(
                        f"{where(context)}: the rows do not fit table {table}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            description = {
                "table": spec.name,
                "schema": spec.schema,
                "partition_column": pcol,
                "columns": list(plan.columns),
                "json_columns": json_columns,
                "key": list(spec.key),
                "write": spec.write,
                "as": plan.returns,
            }
            await conn.execute(
                values_sql,
                context.asset,
                pid,
                context.partition,
                "table",
                json.dumps(description),
                plan.arrow_schema,
                context.run_id,
            )

    async with store.value_write_in_order(context.asset, context.partition):
        await store.call(f"store {where(context)} into table {table}", write)


def _json_cells(plan: TablePlan, json_columns: list[str]) -> list[tuple[Any, ...]]:
    if not json_columns:
        return plan.rows
    positions = {plan.columns.index(c) for c in json_columns}
    return [
        tuple(
            json.dumps(cell, default=str) if i in positions and cell is not None else cell
            for i, cell in enumerate(row)
        )
        for row in plan.rows
    ]


def _create_table_sql(table: str, spec: TableSpec, plan: TablePlan) -> str:
    pcol = quote_ident(spec.partition_column)
    definitions = [f"{pcol} text NOT NULL DEFAULT ''"]
    definitions += [f"{quote_ident(c)} {plan.types[c]}" for c in plan.columns]
    if spec.key:
        keys = ", ".join(quote_ident(k) for k in (spec.partition_column, *spec.key))
        definitions.append(f"PRIMARY KEY ({keys})")
    sql = f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(definitions)})"
    if not spec.key:
        index = quote_ident(f"{spec.name}_{spec.partition_column}_idx"[:63])
        sql += f"; CREATE INDEX IF NOT EXISTS {index} ON {table} ({pcol})"
    return sql


async def _write_rows(
    conn: Connection,
    table: str,
    spec: TableSpec,
    columns: tuple[str, ...],
    rows: list[tuple[Any, ...]],
    pvalue: str,
) -> None:
    pcol = quote_ident(spec.partition_column)
    if spec.write == "replace":
        await conn.execute(f"DELETE FROM {table} WHERE {pcol} = $1", pvalue)
        if rows:
            await conn.copy_records_to_table(
                spec.name,
                schema_name=spec.schema,
                columns=[spec.partition_column, *columns],
                records=[(pvalue, *row) for row in rows],
            )
        return
    if not rows:
        return
    names = ", ".join(quote_ident(c) for c in (spec.partition_column, *columns))
    params = ", ".join(f"${i + 1}" for i in range(len(columns) + 1))
    conflict = ", ".join(quote_ident(c) for c in (spec.partition_column, *spec.key))
    others = [c for c in columns if c not in spec.key]
    action = (
        "DO UPDATE SET "
        + ", ".join(f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in others)
        if others
        else "DO NOTHING"
    )
    await conn.executemany(
        f"INSERT INTO {table} ({names}) VALUES ({params}) ON CONFLICT ({conflict}) {action}",
        [(pvalue, *row) for row in rows],
    )


async def read_table(
    store: ValueWriter, context: IOContext, spec: Mapping[str, Any], arrow_schema: bytes | None
) -> Any:
    """Read a table-mode value back as the type that was stored."""
    table = qualified_from(spec)
    columns: list[str] = list(spec["columns"])
    json_columns = set(spec.get("json_columns", ()))
    keys: list[str] = list(spec.get("key", ()))
    select = ", ".join(
        f"{quote_ident(c)}::text" if c in json_columns else quote_ident(c) for c in columns
    )
    order = ", ".join(quote_ident(k) for k in keys) if keys else "ctid"
    sql = (
        f"SELECT {select or 'NULL'} FROM {table} "
        f"WHERE {quote_ident(spec['partition_column'])} = $1 ORDER BY {order}"
    )

    async def read(conn: Connection) -> list[asyncpg.Record] | None:
        if not columns or not await table_exists(conn, table):
            return None
        return await conn.fetch(sql, pvalue(context.partition))

    fetched = await store.call(f"load {where(context)} from table {table}", read)
    records: list[dict[str, Any]] = []
    for row in fetched or ():
        record = {}
        for i, name in enumerate(columns):
            cell = row[i]
            record[name] = json.loads(cell) if name in json_columns and cell is not None else cell
        records.append(record)
    returns = spec.get("as", "rows")
    if returns == "rows":
        return records
    pa = pyarrow_module(context)
    schema = pa.ipc.read_schema(pa.py_buffer(arrow_schema)) if arrow_schema else None
    if returns == "arrow":
        return pa.Table.from_pylist(records, schema=schema)
    return pa.RecordBatch.from_pylist(records, schema=schema)
