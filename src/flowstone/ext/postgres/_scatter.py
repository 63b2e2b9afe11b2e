"""``PostgresScatterCoordinator``: durable, multi-worker scatter on PostgreSQL.

It executes ``@scatter`` assets the way the in-process coordinator does (same options, same
per-item semantics through the scatter plugin's :class:`~flowstone.ext.scatter.ItemRunner`,
same threshold arithmetic, summary, events and gather), but keeps the barrier in the
database, so that:

* **a crash loses little** — items and their results live in rows; running ``materialize``
  again with the same ``run_id`` continues: finished items are not run again, enumeration
  resumes from its checkpoint, and every item ends with exactly one stored result;
* **several processes share the work** — the starting process enumerates the source and
  runs items; workers (``flowstone worker``, :func:`~flowstone.ext.postgres.run_worker`)
  on any machine claim items of the same barrier; the starting process gathers when every
  item is terminal;
* **dead workers are noticed** — through their session advisory lock at once, or their
  lease, and their items go back to the pool.

The barrier of a scatter asset is keyed by (run, asset, partition). A barrier stored with
another *recipe* (the asset's code version, partition and input versions) is started over;
one that exceeded its failure threshold or ended in a fatal error is reopened on the next
execution (an asset retry, a resumed run): failed items pending again, succeeded ones kept.

It also implements the :class:`~flowstone.protocols.ScatterCoordinator` barrier methods
over the same tables, for code that drives items itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flowstone._core.barrier_store import SourceCheckpoint
from flowstone.ext.scatter import pinned_coordinator, scatter_spec_of

from ._barrier_executor import DEFAULT_FLUSH_INTERVAL, DEFAULT_POLL_INTERVAL
from ._barrier_statements import BarrierStatements
from ._barrier_store import PostgresBarrierStore
from ._errors import describe
from ._scatter_session import DEFAULT_LEASE, WorkerSession, channel_for
from ._scatter_start import BarrierCancelledError as BarrierCancelledError
from ._scatter_start import ScatterBarrierFailedError as ScatterBarrierFailedError
from ._scatter_start import StarterRun
from ._scatter_start import barrier_key as barrier_key
from ._scatter_start import evaluate_batch_input as evaluate_batch_input
from ._scatter_start import recipe_of as recipe_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from flowstone.protocols import BarrierState, Invocation, ScatterItemResult

    from ._store import PostgresStore

__all__ = [
    "BarrierCancelledError",
    "PostgresScatterCoordinator",
    "ScatterBarrierFailedError",
    "barrier_key",
    "evaluate_batch_input",
    "recipe_of",
]

_log = logging.getLogger("flowstone.postgres")

#: Worker sessions a coordinator keeps for its next scatters.
_KEPT_SESSIONS = 2


class PostgresScatterCoordinator:
    """Executes scatter assets durably on PostgreSQL (see the module documentation).

    ``PostgresStore`` registers one as the runtime's ``"scatter"`` coordinator; build one
    yourself to change its options::

        store = PostgresStore(dsn)
        rt = fs.Runtime(store=store,
                        coordinators={"scatter": PostgresScatterCoordinator(store, lease=10)})

    :param store: the store whose pool and schema it uses
    :param lease: seconds a worker's claims outlive its last heartbeat when its death is
        not visible otherwise (a dead process's lock shows at once)
    :param local_concurrency: units this process runs at once (default: the asset's
        ``max_concurrent``; 0: only enumerate, recover and gather, leaving items to workers)
    :param allow_pickle: keep items and results JSON cannot hold as pickles (default: the
        store's ``allow_pickle``); only for data you trust
    :param flush_interval: seconds a finished result may wait before it is written
    :param poll_interval: the longest wait between looks at a barrier while idle
    :raises ValueError: an option is out of range
    """

    def __init__(
        self,
        store: PostgresStore,
        *,
        lease: float = DEFAULT_LEASE,
        local_concurrency: int | None = None,
        allow_pickle: bool | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        if local_concurrency is not None and local_concurrency < 0:
            raise ValueError(f"local_concurrency must be at least 0, got {local_concurrency!r}")
        if flush_interval < 0 or not poll_interval > 0:
            raise ValueError("flush_interval must be >= 0 and poll_interval positive")
        self.store = store
        self.ops = BarrierStatements(store)
        self.lease = lease
        self.local_concurrency = local_concurrency
        self._allow_pickle = allow_pickle
        self.flush_interval = flush_interval
        self.poll_interval = poll_interval
        #: The barriers of the barrier methods (and of code that drives items itself).
        self.barriers = PostgresBarrierStore(store, allow_pickle=allow_pickle)
        self._sessions: list[WorkerSession] = []

    def __repr__(self) -> str:
        return f"PostgresScatterCoordinator(schema={self.store.schema!r}, lease={self.lease:g})"

    @property
    def allow_pickle(self) -> bool:
        """Whether items and results that JSON cannot hold are pickled."""
        if self._allow_pickle is not None:
            return self._allow_pickle
        return bool(getattr(self.store.io_manager, "allow_pickle", False))

    async def aclose(self) -> None:
        """Close the worker sessions kept for the next scatters, and those of the leases
        its barrier store handed out."""
        idle, self._sessions = self._sessions, []
        for session in idle:
            await session.close()
        await self.barriers.aclose()

    async def _session(self) -> WorkerSession:
        """A worker session for one scatter: one kept from an earlier scatter of this
        process when it can be taken up (a new connection, lock and registration cost more
        than the scatter of a few items), else a new one."""
        while self._sessions:
            session = self._sessions.pop()
            if await session.resume():
                return session
            await session.close()
        session = WorkerSession(self.ops, lease=self.lease)
        await session.start()
        return session

    async def _release_session(self, session: WorkerSession, *, reusable: bool) -> None:
        """Keep ``session`` for the next scatter (a few at most), or close it."""
        if (
            reusable
            and not session.pooled  # it would hold a pool connection while idle
            and len(self._sessions) < _KEPT_SESSIONS
            and session.loop_is_current()
        ):
            self._sessions.append(session)
        else:
            await session.close()

    # -- Coordinator -------------------------------------------------------------------

    async def execute(self, invocation: Invocation) -> Any:
        """Run (or continue) the scatter asset of ``invocation`` and return its gathered value.

        An asset that pins another coordinator (``coordinator="name"``) is handed to it.

        :raises ScatterFailureThresholdExceeded: more items failed than tolerated
        :raises DuplicateScatterKeyError: two items have the same key
        :raises StorageError: an item cannot be stored as JSON (and pickle is not allowed)
        :raises DatabaseUnavailableError: PostgreSQL stayed unreachable past the retries
        """
        spec = scatter_spec_of(invocation)
        delegate = pinned_coordinator(invocation, self)
        if delegate is not None:
            return await delegate.execute(invocation)
        return await StarterRun(self, invocation, spec).run()

    # -- the ScatterCoordinator barrier methods ------------------------------------------

    async def create_barrier(
        self,
        barrier_id: str,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        tolerated_failure: float | None,
        total: int | None = None,
    ) -> BarrierState:
        """Create the barrier, or return the existing one's state (resume).

        :param tolerated_failure: a count (``int``) or fraction (``float``); ``None`` is 0
        """
        return await self.barriers.open_barrier(
            barrier_id,
            run_id=run_id,
            asset=asset,
            partition=partition,
            tolerated_failure=tolerated_failure,
            total=total,
        )

    async def add_keys(self, barrier_id: str, keys: Sequence[tuple[int, str]]) -> None:
        """Register items by ``(index, key)``; adding the same pair again is harmless.

        :raises DuplicateScatterKeyError: a key is already registered at another index
        """
        ordered = sorted(keys)
        read = ordered[-1][0] + 1 if ordered else 0
        await self.barriers.add_items(
            barrier_id, [(index, key, None) for index, key in ordered], SourceCheckpoint(read)
        )

    async def set_total(self, barrier_id: str, total: int) -> BarrierState:
        """Record the total once the source is exhausted (a fraction can then be decided)."""
        return await self.barriers.add_items(
            barrier_id, [], SourceCheckpoint(total, exhausted=True)
        )

    async def record(self, barrier_id: str, results: Sequence[ScatterItemResult]) -> BarrierState:
        """Record terminal results; a key recorded before keeps its first result.

        :return: the counts and the threshold decision after these results
        :raises StorageError: a result cannot be stored as JSON (nothing is recorded)
        """
        return await self.barriers.record(barrier_id, None, results)

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The terminal results in source order, read page by page."""
        return self.barriers.gather(barrier_id)

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled: no new item starts, in-flight ones are cancelled."""
        before = await self.barriers.state(barrier_id)
        await self.barriers.cancel(barrier_id, reason)
        if not (before.cancelled or before.exceeded):
            row = await self.barriers.row(barrier_id)
            try:
                await self.ops.notify(channel_for(self.store.schema), str(row.id))
            except Exception as exc:  # others poll as well
                _log.debug("could not notify scatter workers: %s", describe(exc))

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's current counts."""
        return await self.barriers.state(barrier_id)

    async def drop(self, barrier_id: str) -> None:
        """Delete a barrier with its items and results."""
        await self.barriers.drop(barrier_id)
