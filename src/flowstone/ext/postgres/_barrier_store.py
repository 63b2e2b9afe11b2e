"""``PostgresBarrierStore``: scatter barriers in PostgreSQL, shared by processes anywhere.

It implements :class:`flowstone.protocols.BarrierStore` over the durable scatter's tables
and statements (the ones ``PostgresScatterCoordinator`` runs its scatters on):

* a page of items and the source checkpoint go in in one transaction;
* a lease is a row in ``scatter_workers`` plus a session advisory lock held on a connection
  of the lease's own, so a worker whose process dies is seen dead at once, and one that
  stops renewing once its lease runs out; its number is the fencing token claims and
  results carry;
* a claim takes pending items with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers
  never get the same item; a claim whose answer was lost hands its rows back before it is
  tried again;
* a result is written only while its item is not terminal, in the same statement as the
  counters and the threshold decision, so an item has exactly one result.

Items and results are stored as JSON, or as pickles with ``allow_pickle`` (only for data
you trust).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowstone import Status, StorageError
from flowstone._core.barrier_store import (
    BarrierLease,
    BarrierUnit,
    SourceCheckpoint,
    check_finished_page,
)
from flowstone.ext.scatter import DuplicateScatterKeyError, check_tolerated_failure
from flowstone.protocols import BarrierState, ScatterItemResult

from ._barrier_rows import BarrierInit, BarrierRow, Counts, SourceConflict
from ._barrier_statements import BarrierStatements
from ._rows import where_names
from ._scatter_codec import (
    MAX_PLAIN_INT,
    Unstorable,
    compress_result,
    decode,
    decode_results,
    encode,
    is_plain,
)
from ._scatter_session import WorkerSession, namespace_for

if TYPE_CHECKING:
    from ._barrier_rows import ItemRow, LocalOutcome, Outcome
    from ._store import PostgresStore

__all__ = ["PostgresBarrierStore", "barrier_state"]

_PAGE = 1000


def barrier_state(barrier_id: str, counts: Counts) -> BarrierState:
    """A stored barrier's counts as the protocol's :class:`BarrierState`."""
    return BarrierState(
        barrier_id=barrier_id,
        total=counts.total,
        succeeded=counts.succeeded,
        failed=counts.failed,
        retried=counts.retried,
        exceeded=counts.status == "exceeded",
        cancelled=counts.status == "cancelled",
        reason=counts.reason if counts.status == "cancelled" else None,
    )


class PostgresBarrierStore:
    """Scatter barriers in PostgreSQL (see the module documentation).

    ``PostgresScatterCoordinator`` keeps one as its ``barriers``; build one yourself to
    drive a barrier from code::

        barriers = PostgresBarrierStore(store)
        await barriers.open_barrier("b", run_id="r", asset="a", partition=None,
                                    tolerated_failure=0)

    :param store: the store whose pool and schema it uses
    :param allow_pickle: keep items and results JSON cannot hold as pickles (default: the
        store's ``allow_pickle``); only for data you trust
    """

    def __init__(self, store: PostgresStore, *, allow_pickle: bool | None = None) -> None:
        self.ops = BarrierStatements(store)
        self._allow_pickle_setting = allow_pickle
        self._rows: dict[str, BarrierRow] = {}
        self._sessions: dict[int, WorkerSession] = {}
        #: The codec and threshold results of each barrier opened here are compressed with.
        self._codecs: dict[str, tuple[str | None, int]] = {}
        #: A session kept after its lease left, for the next join (a new connection,
        #: lock and registration cost more than a small scatter).
        self._idle: list[WorkerSession] = []
        # Items each lease holds in each barrier, for a claim whose answer was lost.
        self._held: dict[tuple[int, int], set[int]] = {}

    def _allow_pickle(self) -> bool:
        if self._allow_pickle_setting is not None:
            return self._allow_pickle_setting
        return bool(getattr(self.ops.store.io_manager, "allow_pickle", False))

    def __repr__(self) -> str:
        return f"PostgresBarrierStore(schema={self.ops.store.schema!r})"

    async def row(self, barrier_id: str) -> BarrierRow:
        """The stored barrier with this id.

        :raises KeyError: there is none
        """
        row = self._rows.get(barrier_id)
        if row is None:
            row = await self.ops.by_key(barrier_id)
            if row is None:
                raise KeyError(f"no scatter barrier {barrier_id!r}")
            self._rows[barrier_id] = row
        return row

    def _codec_for(self, asset: str, metadata: Mapping[str, Any]) -> tuple[str | None, int]:
        io = self.ops.store.io_manager
        codec_of = getattr(io, "compression_for", None)
        codec = codec_of(asset, metadata) if callable(codec_of) else None
        return codec, int(getattr(io, "compression_threshold", 0))

    def _encode_result(
        self, row: BarrierRow, key: str, value: Any, allow_pickle: bool | None = None
    ) -> tuple[Any, Any]:
        """A result as stored: encoded, then compressed when the barrier's codec says so."""
        encoded = self._encode(row, "result", key, value, allow_pickle)
        chosen = self._codecs.get(row.key)
        if chosen is None:  # a barrier this process did not open: the store's codec
            self._codecs[row.key] = chosen = self._codec_for(row.asset, {})
        return compress_result(encoded, *chosen)

    def _encode(
        self, row: BarrierRow, what: str, key: str, value: Any, allow_pickle: bool | None = None
    ) -> tuple[Any, Any]:
        allow = self._allow_pickle() if allow_pickle is None else allow_pickle
        try:
            return encode(value, allow_pickle=allow)
        except Unstorable as exc:
            hint = (
                ""
                if allow
                else "; return JSON-able data, or opt in to pickle with "
                "PostgresBarrierStore(store, allow_pickle=True)"
            )
            raise StorageError(
                f"{where_names(row.asset, row.partition)}: the {what} of item {key!r} cannot be "
                f"stored: {exc.problem}{hint}"
            ) from None

    # -- barriers ------------------------------------------------------------------------

    async def open_barrier(
        self,
        barrier_id: str,
        *,
        run_id: str,
        asset: str,
        partition: str | None,
        tolerated_failure: int | float | None,
        total: int | None = None,
        recipe: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> BarrierState:
        """Create the barrier, or return the stored one's state; one stored with another
        ``recipe`` is started over (its items and results deleted, in one transaction).
        Results are compressed as the store's IO manager compresses the asset's values
        (its ``compression`` and ``compression_threshold``; ``metadata["compression"]``
        overrides the codec).

        :raises ConfigurationError: the asset names an unknown codec
        """
        tolerated = check_tolerated_failure(0 if tolerated_failure is None else tolerated_failure)
        self._codecs[barrier_id] = self._codec_for(asset, metadata or {})
        row = await self.ops.create_manual(
            BarrierInit(
                key=barrier_id,
                run_id=run_id,
                asset=asset,
                partition=partition,
                run_partition=partition,
                pipeline=None,
                code_version=None,
                recipe=recipe or "",
                input_versions={},
                attempt=1,
                keyed=True,
                batched=False,
                tolerated=tolerated,
                total=total,
                managed=False,
            ),
            restart=recipe is not None,
        )
        known = self._rows.get(barrier_id)
        if known is not None and known.recipe and known.recipe != row.recipe:  # started over
            self._held = {key: held for key, held in self._held.items() if key[0] != row.id}
        self._rows[barrier_id] = row
        return barrier_state(barrier_id, row.counts)

    async def check_items(self, barrier_id: str, items: Sequence[tuple[int, str, Any]]) -> None:
        """Refuse a page with an item that cannot be stored as JSON (or pickled, when
        allowed), before it runs.

        :raises StorageError: naming the asset and the item
        """
        row = await self.row(barrier_id)
        allow = self._allow_pickle()
        for _, key, item in items:
            if not is_plain(item):  # (a plain item is stored as it is)
                self._encode(row, "value", key, item, allow)

    async def add_items(
        self,
        barrier_id: str,
        items: Sequence[tuple[int, str, Any]],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Insert a page of pending items and move the checkpoint, in one transaction.

        :raises DuplicateScatterKeyError: a key is stored at another index (or an index
            holds another key); nothing of the page is stored
        :raises StorageError: an item cannot be stored
        """
        row = await self.row(barrier_id)
        rows: list[ItemRow] = []
        for index, key, item in sorted(items, key=lambda entry: entry[0]):
            text, raw = self._encode(row, "value", key, item)
            rows.append((index, key, text, raw))
        try:
            counts = await self.ops.insert_page(
                row.id,
                rows,
                batched=False,
                units=[],
                enumerated=checkpoint.read,
                cursor=checkpoint.cursor,
                last=checkpoint.exhausted,
                batches=0,
                total=checkpoint.read if checkpoint.exhausted else None,
                notify=None,
            )
        except SourceConflict as conflict:
            raise DuplicateScatterKeyError(
                row.asset, conflict.key, conflict.index, row.partition
            ) from None
        return barrier_state(barrier_id, counts)

    async def add_finished(
        self,
        barrier_id: str,
        lease: BarrierLease,
        items: Sequence[tuple[int, str, Any]],
        results: Sequence[ScatterItemResult],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Insert a page of items run here with the results there are (and a failed or
        running item's item) and move the checkpoint, in one transaction; items without
        a result go in running, held by ``lease``.

        :raises DuplicateScatterKeyError: a key is stored at another index (or an index
            holds another key); nothing of the page is stored
        :raises StorageError: an item or a result cannot be stored
        :raises ValueError: a result is of no item of the page, or two are of one item
        """
        check_finished_page(items, results)
        row = await self.row(barrier_id)
        by_index = {result.index: result for result in results}
        outcomes: list[LocalOutcome] = []
        keys: list[str | None] = []
        allow = self._allow_pickle()
        if any(items[n][0] > items[n + 1][0] for n in range(len(items) - 1)):
            items = sorted(items, key=lambda entry: entry[0])
        for index, key, item in items:
            result = by_index.get(index)
            if result is None:
                text, raw = self._encode(row, "value", key, item, allow)
                outcomes.append((index, "running", None, None, None, 0, text, raw))
            elif result.status is Status.SUCCEEDED:
                value = result.value
                if value.__class__ is int and -MAX_PLAIN_INT < value < MAX_PLAIN_INT:
                    text, raw = str(value), None  # the common result, as encode makes it
                else:
                    text, raw = self._encode_result(row, key, value, allow)
                outcomes.append((index, "succeeded", text, raw, None, result.attempts, None, None))
            else:
                text, raw = self._encode(row, "value", key, item, allow)
                outcomes.append(
                    (index, "failed", None, None, result.error, result.attempts, text, raw)
                )
            keys.append(None if key == str(index) else key)
        try:
            counts = await self.ops.add_finished(
                row.id,
                outcomes,
                keys,
                lease.worker,
                enumerated=checkpoint.read,
                cursor=checkpoint.cursor,
                last=checkpoint.exhausted,
            )
        except SourceConflict as conflict:
            raise DuplicateScatterKeyError(
                row.asset, conflict.key, conflict.index, row.partition
            ) from None
        return barrier_state(barrier_id, counts)

    async def checkpoint(self, barrier_id: str) -> SourceCheckpoint:
        """Where reading the barrier's source stands."""
        row = await self.row(barrier_id)
        stored = await self.ops.checkpoint(row.id)
        return SourceCheckpoint(stored.enumerated, stored.cursor, stored.source_done)

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled (an open one): no unit is handed out any more."""
        row = await self.row(barrier_id)
        await self.ops.set_status(row.id, "cancelled", reason, when=("open",))

    async def reopen(self, barrier_id: str) -> BarrierState:
        """Open the barrier again: failed items pending, succeeded ones kept."""
        row = await self.row(barrier_id)
        sql = self.ops.q.reopen_barrier
        found = await self.ops.call(
            f"reopen scatter barrier {barrier_id!r}",
            lambda conn: conn.fetchrow(sql, row.id, row.attempt),
        )
        assert found is not None
        return barrier_state(barrier_id, BarrierRow.from_row(found).counts)

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's stored counts and decisions; an open barrier found done (every
        item terminal, the source read) is marked ``done`` on its row."""
        row = await self.row(barrier_id)
        counts = await self.ops.state(row.id)
        state = barrier_state(barrier_id, counts)
        if state.done and counts.status == "open":
            await self.ops.set_status(row.id, "done", None, when=("open",))
        return state

    async def drop(self, barrier_id: str) -> None:
        """Delete a barrier with its items and results."""
        row = self._rows.pop(barrier_id, None) or await self.ops.by_key(barrier_id)
        if row is not None:
            await self.ops.drop(row.id)

    async def aclose(self) -> None:
        """Close the sessions of the leases still joined, and the one kept idle (their
        workers are forgotten)."""
        sessions, self._sessions = [*self._sessions.values(), *self._idle], {}
        self._idle = []
        self._held.clear()
        for session in sessions:
            await session.close()

    # -- leases --------------------------------------------------------------------------

    async def join(self, *, lease: float) -> BarrierLease:
        """Register a worker and take its advisory lock on a connection of its own (or
        take up the session an earlier lease left, renewing its lease)."""
        if self._idle and self._idle[-1].lease == lease:  # (another lease length waits)
            session = self._idle.pop()
            if await session.resume():
                self._sessions[session.worker_no] = session
                return BarrierLease(session.worker_no, lease)
            await session.close()
        session = WorkerSession(self.ops, lease=lease)
        await session.start()
        self._sessions[session.worker_no] = session
        return BarrierLease(session.worker_no, lease)

    async def renew(self, lease: BarrierLease) -> bool:
        """Extend the lease, unless it ran out (or the worker is gone)."""
        sql = self.ops.q.renew_lease
        answer = await self.ops.call(
            f"renew the lease of scatter worker {lease.worker}",
            lambda conn: conn.execute(sql, lease.worker, lease.seconds),
        )
        return bool(answer == "UPDATE 1")

    async def has_other_workers(self, lease: BarrierLease) -> bool:
        """Whether another worker of the schema is alive (its lock held, its lease
        running)."""
        session = self._sessions.get(lease.worker)
        namespace = (
            session.namespace if session is not None else namespace_for(self.ops.store.schema)
        )
        return await self.ops.others_alive(namespace, lease.worker)

    async def leave(self, lease: BarrierLease) -> None:
        """Hand back the lease's items and end the lease; its session is kept for the next
        join (one at most), else its lock is released and the worker forgotten."""
        sql = self.ops.q.release_held
        await self.ops.call(
            f"release the items of scatter worker {lease.worker}",
            lambda conn: conn.execute(sql, lease.worker),
        )
        for held in [key for key in self._held if key[1] == lease.worker]:
            del self._held[held]
        session = self._sessions.pop(lease.worker, None)
        if session is None:
            return
        if self._idle or session.pooled or not session.loop_is_current():
            await session.close()
            return
        # Kept for the next join, its lease over: other workers no longer count it alive.
        pause = self.ops.q.pause_worker
        await self.ops.call(
            f"pause scatter worker {lease.worker}", lambda conn: conn.execute(pause, lease.worker)
        )
        self._idle.append(session)

    # -- claiming and recording ----------------------------------------------------------

    async def claim(self, barrier_id: str, lease: BarrierLease, limit: int) -> list[BarrierUnit]:
        """Take up to ``limit`` pending items for ``lease`` (``SKIP LOCKED``)."""
        row = await self.row(barrier_id)
        held = self._held.setdefault((row.id, lease.worker), set())
        claimed = await self.ops.claim(
            row.id, limit, lease.worker, batched=row.batched, owned=lambda: sorted(held)
        )
        allow_pickle = self._allow_pickle()
        units: list[BarrierUnit] = []
        for number, members in claimed.units.items():
            indexes = tuple(member[0] for member in members)
            keys = tuple(
                member[1] if member[1] is not None else str(member[0]) for member in members
            )
            try:
                items = tuple(decode(m[2], m[3], allow_pickle=allow_pickle) for m in members)
            except Unstorable as exc:
                await self.release(barrier_id, lease)
                raise StorageError(
                    f"{where_names(row.asset, row.partition)}: cannot load an item of unit "
                    f"{number}: {exc}"
                ) from None
            held.update(indexes)
            units.append(BarrierUnit(number, indexes, keys, items))
        return units

    async def record(
        self,
        barrier_id: str,
        lease: BarrierLease | None,
        results: Sequence[ScatterItemResult],
    ) -> BarrierState:
        """Write terminal results; an item already terminal keeps its result.

        :raises StorageError: a result cannot be stored (nothing is recorded)
        """
        row = await self.row(barrier_id)
        outcomes: list[Outcome] = []
        for result in results:
            if result.status is Status.SUCCEEDED:
                text, raw = self._encode_result(row, result.key, result.value)
                outcomes.append((result.index, "succeeded", text, raw, None, result.attempts))
            else:
                outcomes.append((result.index, "failed", None, None, result.error, result.attempts))
        if not outcomes:
            return await self.state(barrier_id)
        await self.ops.ensure_items(row.id, [r.index for r in results], [r.key for r in results])
        counts, _ = await self.ops.complete(
            row.id, outcomes, lease.worker if lease is not None else 0
        )
        if lease is not None:
            held = self._held.get((row.id, lease.worker))
            if held is not None:
                held.difference_update(r.index for r in results)
        return barrier_state(barrier_id, counts)

    async def release(self, barrier_id: str, lease: BarrierLease) -> None:
        """Hand back the items ``lease`` holds in the barrier."""
        row = await self.row(barrier_id)
        await self.ops.release_worker(row.id, lease.worker)
        self._held.pop((row.id, lease.worker), None)

    async def recover(self, barrier_id: str, lease: BarrierLease) -> int:
        """Put the running items of dead workers (lock gone, or lease run out) back to
        pending, never ``lease``'s own."""
        row = await self.row(barrier_id)
        session = self._sessions.get(lease.worker)
        namespace = (
            session.namespace if session is not None else namespace_for(self.ops.store.schema)
        )
        return await self.ops.reap(row.id, namespace, lease.worker)

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The terminal results in source order, read a page at a time."""
        return _StoredResults(self, barrier_id)


class _StoredResults(AsyncIterator[ScatterItemResult]):
    """Terminal results of a barrier in source order, a page at a time (a page whose
    results are all JSON text is decoded with one parse)."""

    def __init__(self, store: PostgresBarrierStore, barrier_id: str) -> None:
        self._store = store
        self._key = barrier_id
        self._page: list[ScatterItemResult] = []
        self._after = -1
        self._done = False

    async def __anext__(self) -> ScatterItemResult:
        if not self._page:
            if self._done:
                raise StopAsyncIteration
            await self._read_page()
            if not self._page:
                raise StopAsyncIteration
        return self._page.pop()

    async def _read_page(self) -> None:
        store = self._store
        row = await store.row(self._key)
        records = await store.ops.results_page(row.id, self._after, _PAGE)
        if len(records) < _PAGE:
            self._done = True
        if not records:
            return
        self._after = records[-1]["idx"]
        values = iter(
            decode_results(
                records,
                allow_pickle=store._allow_pickle(),
                where=where_names(row.asset, row.partition),
            )
        )
        page: list[ScatterItemResult] = []
        for r in records:
            key, idx = r["key"], r["idx"]
            ok = r["status"] == "succeeded"
            page.append(
                ScatterItemResult(
                    key if key is not None else str(idx),
                    idx,
                    Status.SUCCEEDED if ok else Status.FAILED,
                    next(values) if ok else None,
                    None if ok else r["error"],
                    r["attempts"],
                )
            )
        page.reverse()
        self._page = page
