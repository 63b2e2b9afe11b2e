"""Writing a barrier executor's finished results: buffered, in batches, several at once.

Finished results wait in a :class:`ResultWriter` until a third of ``max_concurrent`` of
them wait, or ``flush_interval`` after the first one, or at once after a failure (the
threshold decision then comes quickly). :data:`FLUSHERS` tasks write at once, one statement
per batch: two write while the third batch fills. While ``max_concurrent`` results are
unwritten (waiting or being written) the writer is :meth:`~ResultWriter.full`: executors
start no unit, and one that finishes waits (:meth:`~ResultWriter.wait_for_room`) before
adding its result.

Results of items the starting process took from the source without storing them go in as
finished rows, moving the enumeration checkpoint past them (see ``_scatter_local``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

import anyio

from flowstone import StorageError

from ._errors import describe
from ._scatter_codec import MAX_PLAIN_INT, Unstorable, compress_result, encode
from ._work_units import Signal, UnstoredItem

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowstone.ext.scatter import ScatterReporter

    from ._barrier_rows import Counts, LocalOutcome, Outcome
    from ._barrier_statements import BarrierStatements
    from ._scatter_local import LocalLedger
    from ._scatter_session import WorkerSession
    from ._work_units import ExecutorStats, WorkUnit

__all__ = ["FLUSHERS", "ResultWriter"]

_log = logging.getLogger("flowstone.postgres")

#: Batches that may be written at once (together they hold at most max_concurrent results).
FLUSHERS = 3
_MAX_FLUSH = 1000  # results per statement at most (flushed sooner when more wait)
#: The most characters an int result the executor takes as it is can have.
_LONGEST_INT = len(str(MAX_PLAIN_INT))
#: Results that load back from their row as they are.
_AS_STORED = (int, str, float, bool, type(None))


class ResultWriter:
    """Buffers and writes one executor's finished results (see the module documentation).

    :param ops: the barrier statements
    :param session: this process's worker session
    :param barrier_id: the barrier
    :param stats: the executor's figures (``applied`` counts the rows written)
    :param on_counts: takes the barrier's state each write returns
    :param max_concurrent: units the executor runs at once
    :param unit_size: items per unit (the batch size hint, or 1)
    :param flush_interval: seconds a result may wait before it is written
    :param allow_pickle: results may be pickles
    :param where: the asset (and partition), for error messages
    :param reporter: told of every item (``None``: no per-item events)
    :param compression: the codec results of at least ``compression_threshold`` bytes are
        compressed with (``None``: none)
    :param compression_threshold: the smallest result, in bytes, that is compressed
    """

    def __init__(
        self,
        ops: BarrierStatements,
        session: WorkerSession,
        barrier_id: int,
        stats: ExecutorStats,
        on_counts: Callable[[Counts], None],
        *,
        max_concurrent: int,
        unit_size: int,
        flush_interval: float,
        allow_pickle: bool,
        where: str,
        reporter: ScatterReporter | None,
        compression: str | None = None,
        compression_threshold: int = 0,
    ) -> None:
        self._ops = ops
        self._session = session
        self._id = barrier_id
        self._stats = stats
        self._on_counts = on_counts
        self._flush_interval = flush_interval
        self._allow_pickle = allow_pickle
        self._where = where
        self._reporter = reporter
        self._compression = compression
        self._compression_threshold = compression_threshold
        #: Results that make a batch worth writing before ``flush_interval``.
        self.flush_size = min(_MAX_FLUSH, max(1, max_concurrent * unit_size // FLUSHERS))
        #: Unwritten results at which the executor stops adding more.
        self.max_unwritten = max(1, max_concurrent * unit_size)
        self._waiting: list[Outcome] = []
        # Results of items taken from the source here (not stored yet), and what says
        # where the checkpoint may stand once they are written.
        self._waiting_local: list[LocalOutcome] = []
        self.ledger: LocalLedger | None = None
        #: Results of items taken here by position, while they load back as they are
        #: (see :meth:`kept_results`); rows those items wrote.
        self._kept: dict[int, Any] | None = None
        self.local_written = 0
        self._being_written = 0
        self._batches_being_written: list[list[Outcome]] = []
        self._first_waiting = 0.0
        self._urgent = False
        self._open = True
        self._due = Signal()
        self._written = Signal()
        # Executors waiting for unwritten results to be written: a write wakes as many of
        # them as it frees room for (waking them all for every write costs a wake-up each).
        self._blocked: deque[asyncio.Future[None]] = deque()

    @property
    def stores_ints_as_text(self) -> bool:
        """Whether an int result is never compressed (so :meth:`add_int` may take it)."""
        return self._compression is None or self._compression_threshold > _LONGEST_INT

    def accept_unstored(self, ledger: LocalLedger, *, keep: bool) -> None:
        """Take results of items taken from the source unstored, moving ``ledger``'s
        checkpoint as they are written; ``keep`` their results in memory too."""
        self.ledger = ledger
        self._kept = {} if keep else None

    # -- state -------------------------------------------------------------------------

    def unwritten(self) -> int:
        """Finished results not written yet (waiting, or being written)."""
        return self._being_written + len(self._waiting) + len(self._waiting_local)

    def full(self) -> bool:
        """Whether executors must wait for a write before adding results."""
        return self.unwritten() >= self.max_unwritten

    def has_waiting(self) -> bool:
        """Whether results wait for a write."""
        return bool(self._waiting or self._waiting_local)

    def owned(self) -> list[int]:
        """Positions of stored items whose results wait or are being written."""
        owned = [outcome[0] for outcome in self._waiting]
        for batch in self._batches_being_written:
            owned.extend(outcome[0] for outcome in batch)
        return owned

    def kept_results(self, finished: int) -> list[Any] | None:
        """The kept results in source order when all ``finished`` results were written
        from items taken here and each loads back from its row as it is; else ``None``."""
        kept = self._kept
        if kept is None or self.local_written != finished:
            return None
        return [kept[index] for index in sorted(kept)]

    # -- adding ------------------------------------------------------------------------

    def hurry(self) -> None:
        """Write what waits now (executors wait for room, or nothing more comes soon)."""
        self._urgent = True
        self._due.set()

    async def wait_for_room(self) -> None:
        """Wait until a write frees room (call while :meth:`full`)."""
        self.hurry()
        waiter = asyncio.get_running_loop().create_future()
        self._blocked.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._blocked.remove(waiter)

    def add_int(self, idx: int, value: int, local: bool) -> None:
        """:meth:`add` for the common case: one item, an int result, no events."""
        if not self._waiting and not self._waiting_local:
            self._first_waiting = monotonic()
            self._due.set()  # the first result starts the writers' clock
        if local:
            self._waiting_local.append((idx, "succeeded", str(value), None, None, 1, None, None))
            if self._kept is not None:
                self._kept[idx] = value
        else:
            self._waiting.append((idx, "succeeded", str(value), None, None, 1))
        if len(self._waiting) + len(self._waiting_local) >= self.flush_size:
            self._due.set()

    def add(self, unit: WorkUnit, outcomes: list[tuple[bool, Any, int]]) -> None:
        """Add the results of one unit: ``(ok, value or error, attempts)`` per item."""
        waiting = self._waiting
        local = self._waiting_local if unit.local else None
        first = not waiting and not self._waiting_local
        if first:
            self._first_waiting = monotonic()
        allow_pickle = self._allow_pickle
        reporter = self._reporter
        codec = self._compression
        failed = False
        for idx, key, item, (ok, value, attempts) in zip(
            unit.idx, unit.keys, unit.items, outcomes, strict=True
        ):
            outcome: Outcome
            if ok:
                try:
                    text, raw = encode(value, allow_pickle=allow_pickle)
                    if codec is not None:
                        text, raw = compress_result((text, raw), codec, self._compression_threshold)
                except Unstorable as exc:
                    ok = False
                    value = StorageError(
                        f"{self._where}: the result of item {key!r} cannot be stored: "
                        f"{exc.problem}; return JSON-able data, or opt in to pickle with "
                        "PostgresStore(allow_pickle=True)"
                    )
                else:
                    outcome = (idx, "succeeded", text, raw, None, attempts)
            if not ok:
                failed = True
                outcome = (idx, "failed", None, None, f"{type(value).__name__}: {value}", attempts)
            if local is None:
                waiting.append(outcome)
            elif ok:
                local.append((*outcome, None, None))
                if self._kept is not None:
                    if value.__class__ in _AS_STORED:
                        self._kept[idx] = value
                    else:
                        self._kept = None  # loads back otherwise: read the rows
            else:
                # A failed item is stored with it, to run again when the barrier reopens.
                stored = (unit.stored if isinstance(unit, UnstoredItem) else None) or encode(
                    item, allow_pickle=allow_pickle
                )
                local.append((*outcome, *stored))
            if reporter is not None:
                reporter.item(idx, key, ok, attempts, None if ok else value)
        if failed:
            self._urgent = True
        if first or failed or len(waiting) + len(self._waiting_local) >= self.flush_size:
            self._due.set()  # the first result starts the writers' clock

    # -- writing -----------------------------------------------------------------------

    def close(self) -> None:
        """No more results come: write what waits without waiting for more."""
        self._open = False
        self._due.set()

    async def drain(self) -> None:
        """Wait until every result added is written (after :meth:`close`)."""
        while self._waiting or self._waiting_local or self._being_written:
            await self._written.wait()

    async def write_next(self) -> tuple[Counts, bool] | None:
        """Wait until a batch is due, and write it.

        :return: the barrier's state after it, and whether it held results of items taken
            unstored; ``None`` once closed with nothing left to write
        """
        while True:
            waiting = len(self._waiting) + len(self._waiting_local)
            if not waiting:
                if not self._open:
                    return None
                await self._due.wait()
                continue
            if self._open and not self._urgent and waiting < self.flush_size:
                remaining = self._first_waiting + self._flush_interval - monotonic()
                if remaining > 0:
                    await self._due.wait(remaining)
                    continue
            break
        batch, self._waiting = self._waiting, []
        local, self._waiting_local = self._waiting_local, []
        self._urgent = False
        taken = len(batch) + len(local)
        self._being_written += taken
        self._batches_being_written.append(batch)
        counts: Counts | None = None
        written = False
        try:
            if batch:
                counts, applied = await self._ops.complete(self._id, batch, self._session.worker_no)
                written = True
                self._stats.applied += applied
                self._on_counts(counts)
            if local:
                counts = await self._complete_local(local)
        except BaseException:
            # Kept for the last attempt (write_rest).
            if not written:
                self._waiting[:0] = batch
            self._waiting_local[:0] = local
            raise
        finally:
            self._being_written -= taken
            self._batches_being_written = [b for b in self._batches_being_written if b is not batch]
            self._written.set()
            blocked = self._blocked
            for _ in range(min(taken, len(blocked))):
                waiter = blocked.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        assert counts is not None
        return counts, bool(local)

    async def write_rest(self) -> None:
        """Write results still waiting (after a cancellation or a failure), best effort."""
        if not self._waiting and not self._waiting_local:
            return
        batch, self._waiting = self._waiting, []
        local, self._waiting_local = self._waiting_local, []
        try:
            with anyio.fail_after(5):
                if batch:
                    counts, applied = await self._ops.complete(
                        self._id, batch, self._session.worker_no
                    )
                    self._stats.applied += applied
                    self._on_counts(counts)
                if local:
                    await self._complete_local(local)
        except Exception as exc:
            _log.warning(
                "could not write %d finished results of scatter barrier %d (%s); those "
                "items will run again",
                len(batch) + len(local),
                self._id,
                describe(exc),
            )

    async def _complete_local(self, local: list[LocalOutcome]) -> Counts:
        """Insert the finished rows of items taken here, moving the checkpoint past them."""
        ledger = self.ledger
        assert ledger is not None
        writing = ledger.ranges([outcome[0] for outcome in local])
        enumerated, cursor = ledger.checkpoint(writing)
        last = ledger.complete(writing)
        counts, applied = await self._ops.complete_local(
            self._id,
            local,
            self._session.worker_no,
            enumerated=enumerated,
            cursor=cursor,
            last=last,
            total=ledger.total,
        )
        ledger.written(writing, last=last)
        self.local_written += applied
        self._stats.applied += applied
        self._on_counts(counts)
        return counts
