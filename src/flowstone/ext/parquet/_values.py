"""Which values the Parquet IO manager stores, and how each becomes Arrow data.

``pyarrow.Table`` and ``pyarrow.RecordBatch`` are written as they are; a
``pyarrow.RecordBatchReader`` is written batch by batch as it is read, never gathered in
memory; a ``pandas.DataFrame`` is converted with ``pyarrow.Table.from_pandas`` and comes
back as a DataFrame. pandas is never imported here: a DataFrame is recognised by its
type's module and name, so the plugin works without pandas installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from flowstone import StorageError

if TYPE_CHECKING:
    from flowstone.protocols import IOContext

__all__ = ["KIND_KEY", "ValueKind", "describe_schema", "kind_of", "loaded", "to_arrow", "where"]

#: How a value is written: whole (``"table"``: a Table or a RecordBatch), batch by batch
#: (``"reader"``), or converted first (``"pandas"``: a DataFrame, loaded back as one).
ValueKind = Literal["table", "reader", "pandas"]

#: The Parquet schema metadata key that marks a value stored from a pandas DataFrame.
KIND_KEY = b"flowstone.value"

_SUPPORTED = "pyarrow.Table, pyarrow.RecordBatch, pyarrow.RecordBatchReader or pandas.DataFrame"


def where(context: IOContext) -> str:
    """``asset 'a' partition 'p'``: the value an error is about."""
    text = f"asset {context.asset!r}"
    if context.partition is not None:
        text += f" partition {context.partition!r}"
    return text


def _is_dataframe(value: object) -> bool:
    cls = type(value)
    return cls.__module__.startswith("pandas") and cls.__name__ == "DataFrame"


def kind_of(context: IOContext, value: Any) -> ValueKind:
    """How ``value`` is written; checked before anything is written.

    :raises StorageError: the value is none of the supported types
    """
    if isinstance(value, pa.Table | pa.RecordBatch):
        return "table"
    if isinstance(value, pa.RecordBatchReader):
        return "reader"
    if _is_dataframe(value):
        return "pandas"
    cls = type(value)
    raise StorageError(
        f"{where(context)}: the parquet IO manager cannot store a "
        f"{cls.__module__}.{cls.__qualname__}; it stores a {_SUPPORTED}"
    )


def to_arrow(context: IOContext, value: Any, kind: ValueKind) -> pa.Table | pa.RecordBatchReader:
    """``value`` as Arrow data to write (a pandas DataFrame converted, marked as one).

    :raises StorageError: a DataFrame pyarrow cannot convert (mixed-type object columns…)
    """
    if kind == "reader":
        return value  # checked by kind_of
    if kind == "pandas":
        try:
            table = pa.Table.from_pandas(value)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise StorageError(
                f"{where(context)}: parquet: the DataFrame cannot be converted to Arrow: {exc}"
            ) from exc
        metadata = dict(table.schema.metadata or {})
        metadata[KIND_KEY] = b"pandas"
        return table.replace_schema_metadata(metadata)
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    return value  # a Table, checked by kind_of


def describe_schema(schema: pa.Schema) -> list[dict[str, Any]]:
    """The schema as JSON: one ``{"name", "type", "nullable"}`` per column, in order."""
    return [
        {"name": field.name, "type": str(field.type), "nullable": field.nullable}
        for field in schema
    ]


def loaded(table: pa.Table) -> Any:
    """The loaded value: the table, or a DataFrame when one was stored (and pandas is
    installed; without it, the table)."""
    metadata = table.schema.metadata
    if metadata and metadata.get(KIND_KEY) == b"pandas":
        try:
            return table.to_pandas()
        except ImportError:
            return table
    return table
