"""``PostgresItemReader``: scatter items from a table or a query, with keyset pagination.

Each page is ``SELECT … WHERE (key columns) > (last key) ORDER BY key columns LIMIT n``,
so reading page *k* costs the same as page 1, and the cursor is the last key as JSON text
(dates, decimals, UUIDs and bytes tagged): a scatter that checkpoints it resumes right
after the last page it finished, without re-reading from the start.

The key columns must be unique and not null across the source (a primary key is ideal);
rows come back as dicts in key order.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from flowstone import ConfigurationError, StorageError
from flowstone.protocols import ItemPage

from ._errors import RetryPolicy, is_transient, map_errors, retrying
from ._sql import qualified, quote_ident, validate_column, validate_identifier
from ._store import PostgresStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    import asyncpg

    from ._sql import Connection, Pool

__all__ = ["PostgresItemReader"]

T = TypeVar("T")


class PostgresItemReader:
    """Reads rows of a table or query page by page, in key order, resumably.

    Give exactly one of ``table`` and ``query``::

        PostgresItemReader(store, table="orders", key="id")
        PostgresItemReader(store, query="SELECT * FROM orders WHERE day = $1",
                           args=["2025-01-02"], key=["day", "id"])

    :param source: a :class:`PostgresStore` (its pool, retries and error mapping) or an
        asyncpg pool
    :param table: a table name, ``"schema.table"`` allowed
    :param query: a ``SELECT`` whose rows are the items; ``$1``… refer to ``args``
    :param args: the query's parameters
    :param key: the ordering column(s); unique and not null
    :param columns: the columns to return (default: all); key columns are always included
    :param retry: the retry policy when ``source`` is a pool
    :raises ConfigurationError: bad names or options
    """

    def __init__(
        self,
        source: PostgresStore | Pool,
        *,
        table: str | None = None,
        query: str | None = None,
        args: Sequence[Any] = (),
        key: str | Sequence[str] = "id",
        columns: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if (table is None) == (query is None):
            raise ConfigurationError("PostgresItemReader needs exactly one of table= and query=")
        keys = (key,) if isinstance(key, str) else tuple(key)
        try:
            if not keys:
                raise ValueError("key needs at least one column")
            for column in (*keys, *(columns or ())):
                validate_column(column)
            if table is not None:
                schema, dot, name = table.rpartition(".")
                validate_identifier(name, "table name")
                if dot:
                    validate_identifier(schema, "schema name")
                from_clause = qualified(schema, name) if dot else quote_ident(name)
                self._describe = f"table {table!r}"
            else:
                assert query is not None
                from_clause = f"({query}) AS src"
                self._describe = "query"
        except ValueError as exc:
            raise ConfigurationError(f"PostgresItemReader: {exc}") from None
        self._source = source
        self._retry = retry
        self.key = keys
        self._args = tuple(args)
        if columns is None:
            select = "*"
        else:
            chosen = list(dict.fromkeys([*columns, *keys]))
            select = ", ".join(quote_ident(c) for c in chosen)
        order = ", ".join(quote_ident(k) for k in keys)
        first = len(self._args) + 1
        after = ", ".join(f"${first + i}" for i in range(len(keys)))
        limit_first = f"${first}"
        limit_after = f"${first + len(keys)}"
        self._sql_first = f"SELECT {select} FROM {from_clause} ORDER BY {order} LIMIT {limit_first}"
        self._sql_after = (
            f"SELECT {select} FROM {from_clause} WHERE ({order}) > ({after}) "
            f"ORDER BY {order} LIMIT {limit_after}"
        )
        self._sql_count = f"SELECT count(*) FROM {from_clause}"

    def __repr__(self) -> str:
        return f"PostgresItemReader({self._describe}, key={list(self.key)})"

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[dict[str, Any]]:
        """Read up to ``limit`` rows after ``cursor`` (``None``: from the start).

        :return: the rows as dicts and the cursor after them (``None`` at the end)
        :raises StorageError: an invalid cursor or a database error
        """
        if limit < 1:
            raise ConfigurationError(f"limit must be at least 1, got {limit!r}")
        if cursor is None:
            sql, params = self._sql_first, (*self._args, limit)
        else:
            sql, params = self._sql_after, (*self._args, *self._decode(cursor), limit)
        rows = await self._call(
            f"read items from {self._describe}", lambda conn: conn.fetch(sql, *params)
        )
        items = [dict(row) for row in rows]
        next_cursor = None
        if len(rows) == limit:
            next_cursor = self._encode(rows[-1])
        return ItemPage(items, next_cursor)

    async def count(self) -> int:
        """The number of rows in the source."""
        sql = self._sql_count
        found = await self._call(
            f"count items of {self._describe}", lambda conn: conn.fetchval(sql, *self._args)
        )
        return int(found or 0)

    async def _call(self, what: str, operation: Callable[[Connection], Awaitable[T]]) -> T:
        source = self._source
        if isinstance(source, PostgresStore):
            return await source.call(what, operation)

        async def attempt() -> T:
            async with source.acquire() as conn:
                try:
                    return await operation(conn)
                except Exception as exc:
                    if is_transient(exc) and not conn.is_closed():
                        conn.terminate()
                    raise

        with map_errors(what):
            return await retrying(attempt, what=what, policy=self._retry)

    def _encode(self, row: asyncpg.Record) -> str:
        try:
            return json.dumps([_encode_key(row[k]) for k in self.key], separators=(",", ":"))
        except (TypeError, KeyError) as exc:
            raise StorageError(f"{self!r}: cannot make a cursor from the key: {exc}") from None

    def _decode(self, cursor: str) -> list[Any]:
        try:
            values = json.loads(cursor)
            if not isinstance(values, list) or len(values) != len(self.key):
                raise ValueError(f"expected {len(self.key)} key value(s)")
            return [_decode_key(v) for v in values]
        except (ValueError, TypeError, KeyError) as exc:
            raise StorageError(f"{self!r}: invalid cursor {cursor!r}: {exc}") from None


def _encode_key(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"unsupported key type {type(value).__qualname__}")


_DECODERS: dict[str, Callable[[str], Any]] = {
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$decimal": decimal.Decimal,
    "$uuid": uuid.UUID,
    "$bytes": base64.b64decode,
}


def _decode_key(value: Any) -> Any:
    if isinstance(value, dict):
        ((tag, text),) = value.items()
        return _DECODERS[tag](text)
    return value
