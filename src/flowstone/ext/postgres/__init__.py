"""PostgreSQL durable backend: ``Runtime(store=PostgresStore(dsn))`` makes a runtime durable.

- :class:`PostgresStore` — runs and materialization records in PostgreSQL; installs the
  ``postgres`` IO manager as the runtime's default and the durable coordinators; owns the
  asyncpg pool; migrates its schema (``await store.migrate()``, ``flowstone db migrate``).
- :class:`PostgresIOManager` — asset values as JSONB, Arrow IPC or bytes, or rows in a
  table of yours (table mode, :class:`TableSpec`).
- :class:`PostgresItemReader` — scatter items from a table or query, page by page, with a
  resumable keyset cursor.
- :class:`RetryPolicy` — how long transient failures (lost connections, a restarting
  server) are retried before :class:`DatabaseUnavailableError`.

Needs the ``postgres`` extra: ``pip install 'flowstone[postgres]'``.
"""

from __future__ import annotations

try:
    import asyncpg as _asyncpg  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.postgres", "asyncpg", "postgres") from _exc

from ._errors import DatabaseUnavailableError as DatabaseUnavailableError
from ._errors import RetryPolicy as RetryPolicy
from ._errors import SchemaVersionError as SchemaVersionError
from ._io import PostgresIOManager as PostgresIOManager
from ._io import TableSpec as TableSpec
from ._migrations import latest_version as latest_version
from ._reader import PostgresItemReader as PostgresItemReader
from ._store import PostgresStore as PostgresStore

__all__ = (
    "DatabaseUnavailableError",
    "PostgresIOManager",
    "PostgresItemReader",
    "PostgresStore",
    "RetryPolicy",
    "SchemaVersionError",
    "TableSpec",
    "latest_version",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
