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
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from flowstone import Status, StorageError
from flowstone.ext.scatter import (
    DuplicateScatterKeyError,
    check_tolerated_failure,
    pinned_coordinator,
    scatter_spec_of,
)
from flowstone.protocols import BarrierState, ScatterItemResult

from ._barrier_executor import DEFAULT_FLUSH_INTERVAL, DEFAULT_POLL_INTERVAL
from ._barrier_rows import BarrierInit, BarrierRow, Counts, SourceConflict
from ._barrier_statements import BarrierStatements
from ._errors import describe
from ._rows import where_names
from ._scatter_codec import Unstorable, decode, encode
from ._scatter_session import DEFAULT_LEASE, WorkerSession, channel_for
from ._scatter_start import BarrierCancelledError as BarrierCancelledError
from ._scatter_start import ScatterBarrierFailedError as ScatterBarrierFailedError
from ._scatter_start import StarterRun
from ._scatter_start import barrier_key as barrier_key
from ._scatter_start import evaluate_batch_input as evaluate_batch_input
from ._scatter_start import recipe_of as recipe_of

if TYPE_CHECKING:
    import asyncpg

    from flowstone.protocols import Invocation

    from ._barrier_rows import Outcome
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
_PAGE = 1000


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
        self._ids: dict[str, BarrierRow] = {}
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
        """Close the worker sessions kept for the next scatters."""
        idle, self._sessions = self._sessions, []
        for session in idle:
            await session.close()

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

    async def _barrier(self, barrier_id: str) -> BarrierRow:
        row = self._ids.get(barrier_id)
        if row is None:
            row = await self.ops.by_key(barrier_id)
            if row is None:
                raise KeyError(f"no scatter barrier {barrier_id!r}")
            self._ids[barrier_id] = row
        return row

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
        tolerated = check_tolerated_failure(0 if tolerated_failure is None else tolerated_failure)
        row = await self.ops.create_manual(
            BarrierInit(
                key=barrier_id,
                run_id=run_id,
                asset=asset,
                partition=partition,
                run_partition=partition,
                pipeline=None,
                code_version=None,
                recipe="",
                input_versions={},
                attempt=1,
                keyed=True,
                batched=False,
                tolerated=tolerated,
                total=total,
                managed=False,
            )
        )
        self._ids[barrier_id] = row
        return _state(barrier_id, row.counts)

    async def add_keys(self, barrier_id: str, keys: Sequence[tuple[int, str]]) -> None:
        """Register items by ``(index, key)``; adding the same pair again is harmless.

        :raises DuplicateScatterKeyError: a key is already registered at another index
        """
        row = await self._barrier(barrier_id)
        ordered = sorted(keys)
        try:
            await self.ops.insert_page(
                row.id,
                [(index, key, None, None) for index, key in ordered],
                batched=False,
                units=[],
                enumerated=ordered[-1][0] + 1 if ordered else 0,
                cursor=None,
                last=False,
                batches=0,
                total=None,
                notify=None,
            )
        except SourceConflict as conflict:
            raise DuplicateScatterKeyError(
                row.asset, conflict.key, conflict.index, row.partition
            ) from None

    async def set_total(self, barrier_id: str, total: int) -> BarrierState:
        """Record the total once the source is exhausted (a fraction can then be decided)."""
        row = await self._barrier(barrier_id)
        return _state(barrier_id, await self.ops.end_source(row.id, total))

    async def record(self, barrier_id: str, results: Sequence[ScatterItemResult]) -> BarrierState:
        """Record terminal results; a key recorded before keeps its first result.

        :return: the counts and the threshold decision after these results
        :raises StorageError: a result cannot be stored as JSON (nothing is recorded)
        """
        row = await self._barrier(barrier_id)
        outcomes: list[Outcome] = []
        for result in results:
            if result.status is Status.SUCCEEDED:
                try:
                    text, raw = encode(result.value, allow_pickle=self.allow_pickle)
                except Unstorable as exc:
                    raise StorageError(
                        f"{where_names(row.asset, row.partition)}: the result of item "
                        f"{result.key!r} cannot be stored: {exc.problem}"
                    ) from None
                outcomes.append((result.index, "succeeded", text, raw, None, result.attempts))
            else:
                outcomes.append((result.index, "failed", None, None, result.error, result.attempts))
        await self.ops.ensure_items(row.id, [r.index for r in results], [r.key for r in results])
        counts, _ = await self.ops.complete(row.id, outcomes)
        return _state(barrier_id, counts)

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The terminal results in source order, read page by page."""
        return _BarrierResults(self, barrier_id)

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled: no new item starts, in-flight ones are cancelled."""
        row = await self._barrier(barrier_id)
        if await self.ops.set_status(row.id, "cancelled", reason, when=("open",)):
            try:
                await self.ops.notify(channel_for(self.store.schema), str(row.id))
            except Exception as exc:  # others poll as well
                _log.debug("could not notify scatter workers: %s", describe(exc))

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's current counts."""
        row = await self._barrier(barrier_id)
        return _state(barrier_id, await self.ops.state(row.id))

    async def drop(self, barrier_id: str) -> None:
        """Delete a barrier with its items and results."""
        row = self._ids.pop(barrier_id, None) or await self.ops.by_key(barrier_id)
        if row is not None:
            await self.ops.drop(row.id)


def _state(barrier_id: str, counts: Counts) -> BarrierState:
    return BarrierState(
        barrier_id=barrier_id,
        total=counts.total,
        succeeded=counts.succeeded,
        failed=counts.failed,
        retried=counts.retried,
        exceeded=counts.status == "exceeded",
        cancelled=counts.status == "cancelled",
    )


class _BarrierResults(AsyncIterator[ScatterItemResult]):
    """Terminal results of a barrier in source order, a page at a time."""

    def __init__(self, coordinator: PostgresScatterCoordinator, barrier_id: str) -> None:
        self._coordinator = coordinator
        self._key = barrier_id
        self._page: list[asyncpg.Record] = []
        self._after = -1
        self._done = False

    async def __anext__(self) -> ScatterItemResult:
        coordinator = self._coordinator
        if not self._page:
            if self._done:
                raise StopAsyncIteration
            row = await coordinator._barrier(self._key)
            self._page = list(await coordinator.ops.results_page(row.id, self._after, _PAGE))
            self._page.reverse()
            if len(self._page) < _PAGE:
                self._done = True
            if not self._page:
                raise StopAsyncIteration
        record = self._page.pop()
        self._after = record["idx"]
        ok = record["status"] == "succeeded"
        return ScatterItemResult(
            key=record["key"] if record["key"] is not None else str(record["idx"]),
            index=record["idx"],
            status=Status.SUCCEEDED if ok else Status.FAILED,
            value=decode(
                record["result"], record["result_raw"], allow_pickle=coordinator.allow_pickle
            )
            if ok
            else None,
            error=None if ok else record["error"],
            attempts=record["attempts"],
        )
