"""PostgreSQL durable backend: ``Runtime(store=PostgresStore(dsn))`` makes a runtime durable.

- :class:`PostgresStore` — runs and materialization records in PostgreSQL; installs the
  ``postgres`` IO manager as the runtime's default and the durable coordinators; owns the
  asyncpg pool; migrates its schema (``await store.migrate()``, ``flowstone db migrate``).
- :class:`PostgresIOManager` — asset values as JSONB, Arrow IPC or bytes, or rows in a
  table of yours (table mode, :class:`TableSpec`).
- :class:`PostgresItemReader` — scatter items from a table or query, page by page, with a
  resumable keyset cursor.
- :class:`PostgresScatterCoordinator` — durable scatter: item rows claimed in batches with
  ``FOR UPDATE SKIP LOCKED`` under a lease, by the starting process and by workers
  (:func:`run_worker`, ``flowstone worker``) on any machine.
- :class:`PostgresBarrierStore` — the :class:`~flowstone.protocols.BarrierStore` over the
  same tables (the coordinator's ``barriers``), for code that drives a barrier itself.
- :class:`PostgresRoutingCoordinator`, :class:`PostgresParallelCoordinator` — routers'
  decisions and parallel branch records stored in the schema, so a run resumed in another
  process takes the route it took before.
- :class:`PostgresEvents` — the relay of runs' coarse lifecycle events between the
  processes sharing the schema (LISTEN/NOTIFY), so ``runtime.subscribe`` sees them all;
  every store installs one (``events=False`` turns it off), a plugin replaces it.
- :class:`PostgresGateStore` — gates (``flowstone.ext.gates``) in the schema, resolved
  once across processes, with ``LISTEN``/``NOTIFY`` waking a run that holds its gate;
  :class:`GateResumer` (part of ``flowstone worker``) resumes runs whose gates closed.
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

from ._barrier_store import PostgresBarrierStore as PostgresBarrierStore
from ._decisions import PostgresParallelCoordinator as PostgresParallelCoordinator
from ._decisions import PostgresRoutingCoordinator as PostgresRoutingCoordinator
from ._errors import DatabaseUnavailableError as DatabaseUnavailableError
from ._errors import RetryPolicy as RetryPolicy
from ._errors import SchemaVersionError as SchemaVersionError
from ._event_codec import RemoteError as RemoteError
from ._events import PostgresEvents as PostgresEvents
from ._gate_worker import GateResumer as GateResumer
from ._gate_worker import ResumerStats as ResumerStats
from ._gate_worker import resume_gated_runs as resume_gated_runs
from ._gates import PostgresGateStore as PostgresGateStore
from ._io import PostgresIOManager as PostgresIOManager
from ._io import TableSpec as TableSpec
from ._migrations import latest_version as latest_version
from ._reader import PostgresItemReader as PostgresItemReader
from ._scatter import BarrierCancelledError as BarrierCancelledError
from ._scatter import PostgresScatterCoordinator as PostgresScatterCoordinator
from ._scatter import ScatterBarrierFailedError as ScatterBarrierFailedError
from ._store import PostgresStore as PostgresStore
from ._worker import ScatterWorker as ScatterWorker
from ._worker import WorkerStats as WorkerStats
from ._worker import run_worker as run_worker

__all__ = (
    "BarrierCancelledError",
    "DatabaseUnavailableError",
    "PostgresBarrierStore",
    "PostgresEvents",
    "GateResumer",
    "PostgresGateStore",
    "PostgresIOManager",
    "PostgresItemReader",
    "PostgresParallelCoordinator",
    "PostgresRoutingCoordinator",
    "PostgresScatterCoordinator",
    "PostgresStore",
    "RemoteError",
    "ResumerStats",
    "RetryPolicy",
    "ScatterBarrierFailedError",
    "ScatterWorker",
    "SchemaVersionError",
    "TableSpec",
    "WorkerStats",
    "latest_version",
    "resume_gated_runs",
    "run_worker",
)

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
