"""Enumerating a durable scatter's source into item rows, with a resumable checkpoint.

The starting process reads the source page by page and, for each page, inserts the items
(as JSON, with their keys) and moves the barrier's checkpoint past them in one transaction:
the reader's cursor for an :class:`~flowstone.protocols.ItemReader`, the count of items read
for other sources. A resumed run starts from the checkpoint: a reader from its cursor, an
iterable is read again and the items before the checkpoint are skipped. Inserting is
idempotent, so a page written twice (its answer lost) changes nothing; a key seen twice is a
:class:`~flowstone.ext.scatter.DuplicateScatterKeyError`. A keyed page is never split: its
keys go in with one statement before any of its items runs.

In the starting process, unkeyed items of an unbatched scatter that it has room for are not
inserted at all: it runs them first and each row goes in once, finished (see
``_scatter_local``); the checkpoint then stays before the first of them not yet written.
A page waits a moment (``_ROOM_WAIT``) for that room, then leaves the rest to any worker;
but while no other worker is alive, it waits on (looking for workers again every
``_ALONE_WAIT``): items stored pending for no one would only come back to this process
through a claim and a completion, three statements where one does.

Batched scatters assign each item to a batch as batches close (the same
:class:`~flowstone.ext.scatter.Batcher` as in-process); items of a batch still open wait in
their rows, unclaimable, and a resumed enumeration rebuilds the open batches from them.
``batch_fn`` needs every item, so the source is read completely first (as in-process).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from time import monotonic
from typing import TYPE_CHECKING, Any, TypeGuard

from flowstone import StorageError
from flowstone.ext.scatter import (
    Batcher,
    DuplicateScatterKeyError,
    open_feed,
    precompute_batches,
)
from flowstone.protocols import ItemReader

from ._barrier_rows import SourceConflict
from ._scatter_codec import Unstorable, decode, encode, has_surrogate, is_plain
from ._scatter_local import LocalLedger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from flowstone.ext.scatter import Batch, ScatterSpec

    from ._barrier_rows import Checkpoint, Counts, ItemRow, UnitRow
    from ._barrier_statements import BarrierStatements
    from ._held_units import HeldUnits

__all__ = ["SourceChangedError", "Enumerator"]

Pair = tuple[int, Any]

#: Seconds an async source's items may wait for their page to fill before being written.
_SLOW_SOURCE_WAIT = 0.1
#: Seconds a page may wait for the starting process to have room to take its items as
#: they are inserted; then the rest goes in unclaimed, for any worker.
_ROOM_WAIT = 0.05
#: While no other worker is alive, a page waits on for room in steps of this many seconds
#: (and looks for workers again after each): short, so that a worker starting while the
#: scatter runs gets the next pages at once.
_ALONE_WAIT = 0.05
_PLAIN = (int, str, bool, type(None))


class SourceChangedError(StorageError):
    """A resumed scatter read an item whose key differs from the one stored at its position.

    The source must give the same items in the same order each time it is read.
    """

    def __init__(self, where: str, key: str, index: int) -> None:
        self.key = key
        self.index = index
        super().__init__(
            f"{where}: the scatter source changed since the run started: position {index} "
            f"now has key {key!r}; a resumed scatter needs a source that gives the same items "
            "in the same order"
        )


class Enumerator:
    """Writes a scatter's items into its barrier (see the module documentation).

    :param ops: the scatter operations
    :param barrier_id: the barrier
    :param checkpoint: where a previous enumeration stopped
    :param spec: the scatter's options (key, batching, page size)
    :param source: the items value (iterable, async iterable, awaitable) or an ItemReader
    :param where: the asset (and partition), for messages
    :param asset: the asset's name, for errors
    :param partition: the partition key, for errors
    :param allow_pickle: items that are not JSON-able may be pickled
    :param notify: ``(channel, payload)`` sent with each page
    :param on_page: called with the barrier's state after each page, and whether some of
        its items went in unclaimed
    :param taker: the starting process's held units: items it has room for go straight to
        it, unstored (unkeyed, unbatched items) or inserted claimed by it (``worker_no``),
        without a claim or a decode
    :param worker_no: the starting process's worker number
    :param others_alive: whether another live worker could take items stored pending
        (``None``: assume so, a page never waits longer than ``_ROOM_WAIT``)
    """

    def __init__(
        self,
        ops: BarrierStatements,
        barrier_id: int,
        checkpoint: Checkpoint,
        spec: ScatterSpec,
        source: Any,
        *,
        where: str,
        asset: str,
        partition: str | None,
        allow_pickle: bool,
        notify: tuple[str, str] | None,
        on_page: Callable[[Counts, bool], None],
        taker: HeldUnits | None = None,
        worker_no: int = 0,
        others_alive: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._ops = ops
        self._id = barrier_id
        self._checkpoint = checkpoint
        self._spec = spec
        self._source = source
        self._where = where
        self._asset = asset
        self._partition = partition
        self._allow_pickle = allow_pickle
        self._notify = notify
        self._on_page = on_page
        self._taker = taker
        self._worker_no = worker_no
        self._others_alive = others_alive
        # Until when no other worker is known to be alive (see _room_left).
        self._alone_until = 0.0
        self._keyfn = spec.key
        self._batch: Batch | None = spec.batch
        self._batcher: Batcher | None = None
        self._batches = checkpoint.batches
        self._read = checkpoint.enumerated
        self._pending_units: list[list[Pair]] | None = None
        self._reader = _is_reader(source)
        # Unkeyed, unbatched items the starting process has room for are run before they
        # are stored (see ``_scatter_local``); keys must be checked for duplicates first.
        self._ledger: LocalLedger | None = (
            LocalLedger(checkpoint.enumerated, checkpoint.cursor)
            if taker is not None and spec.batch is None and spec.key is None
            else None
        )
        # The highest position stored before this enumeration began (a resumed one):
        # items up to it go the claimed way, where inserting twice is harmless.
        self._stored_max = -1

    @property
    def feeds(self) -> bool:
        """Whether it hands the starting process items as it reads them."""
        return self._taker is not None and self._batch is None

    @property
    def ledger(self) -> LocalLedger | None:
        """The items the starting process runs before they are stored (``None``: none)."""
        return self._ledger

    async def run(self) -> None:
        """Read the rest of the source into the barrier.

        :raises DuplicateScatterKeyError: two items have the same key
        :raises SourceChangedError: a resumed source gives other items than before
        :raises StorageError: an item cannot be stored as JSON (and pickle is not allowed)
        """
        batch = self._batch
        if batch is not None and batch.batch_fn is not None:
            await self._run_batch_fn(batch)
            return
        if batch is not None:
            self._batcher = Batcher(batch)
            if self._read:
                await self._reopen_batches()
        if self._ledger is not None:
            self._stored_max = await self._ops.max_idx(self._id)
        source = self._source
        if _is_reader(source):
            await self._run_reader(source)
        else:
            await self._run_feed(source)
        if self._ledger is not None and self._ledger.due():
            await self.finish()

    async def finish(self) -> None:
        """Record the end of the source once every item taken here is stored (whoever
        notices it first: the enumerator, or the flush that wrote the last of them)."""
        ledger = self._ledger
        if ledger is None or not ledger.due():
            return
        ledger.final_sent = True
        try:
            counts = await self._ops.end_source(self._id, ledger.read, self._notify)
        except BaseException:
            ledger.final_sent = False
            raise
        self._on_page(counts, False)

    # -- sources -----------------------------------------------------------------------

    async def _run_reader(self, reader: ItemReader[Any]) -> None:
        cursor = self._checkpoint.cursor
        page_size = self._spec.page_size
        while True:
            page = await reader.read_page(cursor, page_size)
            pairs = list(enumerate(page.items, self._read))
            last = page.cursor is None
            await self._write(pairs, cursor=page.cursor, last=last, total=None)
            cursor = page.cursor
            if last:
                return

    async def _run_feed(self, source: Any) -> None:
        feed = await open_feed(source, page_size=self._spec.page_size)
        total = feed.total if feed.exhausted else None
        skip = self._read
        page_size = self._spec.page_size
        chunk: list[Pair] = []
        started = 0.0
        try:
            while True:
                page = feed.current
                for index, item in page:
                    if index < skip:
                        continue
                    if not chunk:
                        started = monotonic()
                    chunk.append((index, item))
                    if len(chunk) >= page_size or (
                        not feed.exhausted and monotonic() - started >= _SLOW_SOURCE_WAIT
                    ):
                        await self._write(chunk, cursor=None, last=False, total=total)
                        chunk = []
                if not await feed.refill(page):
                    break
            await self._write(chunk, cursor=None, last=True, total=total)
        finally:
            await feed.aclose()

    async def _run_batch_fn(self, batch: Batch) -> None:
        source = self._source
        pairs: list[Pair] = []
        if _is_reader(source):
            cursor: str | None = None
            while True:
                page = await source.read_page(cursor, self._spec.page_size)
                pairs.extend(enumerate(page.items, len(pairs)))
                cursor = page.cursor
                if cursor is None:
                    break
        else:
            feed = await open_feed(source, page_size=self._spec.page_size)
            try:
                pairs = await feed.drain()
            finally:
                await feed.aclose()
        batches = precompute_batches(pairs, batch)
        units: list[UnitRow] = [
            (number, [index for index, _ in members]) for number, members in enumerate(batches)
        ]
        page_size = self._spec.page_size
        self._read = 0
        for start in range(0, len(pairs), page_size):
            chunk = pairs[start : start + page_size]
            last = start + page_size >= len(pairs)
            await self._write(chunk, cursor=None, last=last, total=len(pairs), units=units)
        if not pairs:
            await self._write([], cursor=None, last=True, total=0, units=[])

    async def _reopen_batches(self) -> None:
        """Rebuild the batches that were open at the checkpoint from their stored items."""
        batcher = self._batcher
        assert batcher is not None
        closed: list[list[Pair]] = []
        for index, _, text, raw in await self._ops.open_batch_items(self._id):
            closed.extend(batcher.add(index, decode(text, raw, allow_pickle=self._allow_pickle)))
        if closed:  # a deterministic source never closes a batch here; stay correct anyway
            self._pending_units = closed

    # -- writing -----------------------------------------------------------------------

    async def _write(
        self,
        pairs: list[Pair],
        *,
        cursor: str | None,
        last: bool,
        total: int | None,
        units: list[UnitRow] | None = None,
    ) -> None:
        batched = self._batch is not None
        taker = self._taker
        if taker is not None and not batched and units is None and pairs:
            if self._ledger is not None and pairs[0][0] > self._stored_max:
                await self._take_locally(pairs, cursor=cursor, last=last, total=total)
                return
            rows = [self._row(index, item) for index, item in pairs]
            claim = 0
            # The page waits for this process _ROOM_WAIT in all (longer while no other
            # worker is alive): a starting process slower than that leaves the rest to any
            # worker.
            deadline = [monotonic() + _ROOM_WAIT]
            while True:
                want = min(len(rows), taker.slots_worth_waiting_for)
                room, enough = await taker.wait_for_slots(want, await self._room_left(deadline))
                if not enough and taker.accepting and await self._room_left(deadline) > 0:
                    continue
                if not enough or room >= len(rows) or self._reader or self._keyfn is not None:
                    # A reader's page keeps its cursor: it is not split. Nor is a keyed
                    # page: its keys go in at once, so that a duplicate among them fails
                    # the page before any of its items runs.
                    claim = min(room, len(rows))
                    break
                # Room for part of the page: insert that part claimed, then wait again.
                await self._insert(
                    pairs[:room], rows[:room], cursor=None, last=False, total=total, claim=room
                )
                pairs, rows = pairs[room:], rows[room:]
            await self._insert(pairs, rows, cursor=cursor, last=last, total=total, claim=claim)
            return
        rows = [self._row(index, item) for index, item in pairs]
        if units is None and self._batcher is not None:
            closed: list[list[Pair]] = self._pending_units or []
            self._pending_units = None
            for index, item in pairs:
                closed.extend(self._batcher.add(index, item))
            if last:
                closed.extend(self._batcher.flush_all())
            units = []
            for members in closed:
                units.append((self._batches, [index for index, _ in members]))
                self._batches += 1
        elif units is not None:
            if last:
                self._batches = len(units)
            else:
                units = []
        await self._insert(pairs, rows, cursor=cursor, last=last, total=total, units=units)

    async def _insert(
        self,
        pairs: list[Pair],
        rows: list[ItemRow],
        *,
        cursor: str | None,
        last: bool,
        total: int | None,
        units: list[UnitRow] | None = None,
        claim: int = 0,
    ) -> None:
        """Insert rows (the first ``claim`` taken by this process) and move the checkpoint."""
        read = pairs[-1][0] + 1 if pairs else self._read
        enumerated = read
        ledger = self._ledger
        if ledger is not None:
            # Items taken here and not yet stored hold the checkpoint back.
            ledger.advance(
                read, cursor, page=self._reader and (cursor is not None or last), last=last
            )
            enumerated, cursor = ledger.checkpoint()
            last = ledger.complete()
            if last:
                ledger.final_sent = True
        taker = self._taker
        if claim and taker is not None and all(r[2] is not None for r in rows[:claim]):
            taker.reserve_slots(claim)
        else:
            claim = 0
        mine: list[int] = []
        try:
            counts, mine = await self._ops.insert_claiming(
                self._id,
                rows,
                batched=self._batch is not None,
                units=units or [],
                enumerated=enumerated,
                cursor=cursor,
                last=last,
                batches=self._batches,
                total=total,
                notify=self._notify,
                claim=claim,
                worker_no=self._worker_no,
            )
        except BaseException as error:
            if ledger is not None and last:
                ledger.final_sent = False
            if not isinstance(error, SourceConflict):
                raise
            conflict = error
            if conflict.duplicate:
                raise DuplicateScatterKeyError(
                    self._asset, conflict.key, conflict.index, self._partition
                ) from None
            raise SourceChangedError(self._where, conflict.key, conflict.index) from None
        finally:
            if claim and taker is not None:
                taker.take_claimed_on_insert(claim, self._taken(pairs, rows, mine))
        self._read = read
        self._on_page(counts, len(mine) < len(rows))

    async def _take_locally(
        self, pairs: list[Pair], *, cursor: str | None, last: bool, total: int | None
    ) -> None:
        """Hand the starting process as many items as it has room for, to run before they
        are stored; insert the rest pending, for any worker."""
        ledger = self._ledger
        taker = self._taker
        assert ledger is not None and taker is not None
        if total is not None:
            ledger.total = total
        deadline = [monotonic() + _ROOM_WAIT]
        rest = pairs
        while rest:
            want = min(len(rest), taker.slots_worth_waiting_for)
            room, _ = await taker.wait_for_slots(want, await self._room_left(deadline))
            if room <= 0:
                if taker.accepting and await self._room_left(deadline) > 0:
                    continue
                break
            part, rest = rest[:room], rest[room:]
            taken: list[tuple[int, Any, str | None, bytes | None]] = []
            for index, item in part:
                if item.__class__ in _PLAIN and is_plain(item):
                    taken.append((index, item, None, None))
                else:
                    # Checked as if it were stored: a failed item is, to be run again.
                    _, _, text, raw = self._row(index, item)
                    taken.append((index, item, text, raw))
            ledger.take(part[0][0], part[-1][0] + 1)
            taker.take_unstored(taken)
            if rest and await self._room_left(deadline) <= 0:
                break
        if rest:
            rows = [self._row(index, item) for index, item in rest]
            await self._insert(rest, rows, cursor=cursor, last=last, total=total)
            return
        end = pairs[-1][0] + 1
        ledger.advance(end, cursor, page=self._reader, last=last)
        self._read = end

    async def _room_left(self, deadline: list[float]) -> float:
        """Seconds a page may still wait for room in the starting process.

        :param deadline: ``[when the wait ends]``; moved on by ``_ALONE_WAIT`` when it has
            passed and no other worker is alive (asked at most every ``_ALONE_WAIT``)
        """
        now = monotonic()
        left = deadline[0] - now
        if left > 0 or self._others_alive is None:
            return max(0.0, left)
        if now >= self._alone_until:
            if await self._others_alive():
                return 0.0
            now = monotonic()
            self._alone_until = now + _ALONE_WAIT
        deadline[0] = self._alone_until
        return self._alone_until - now

    def _taken(
        self, pairs: list[Pair], rows: list[ItemRow], mine: list[int]
    ) -> list[tuple[int, str, Any]]:
        """``(idx, key, item)`` of the items claimed on insert, as a worker would load them."""
        if not mine:
            return []
        first = pairs[0][0]
        allow_pickle = self._allow_pickle
        taken: list[tuple[int, str, Any]] = []
        for idx in mine:
            index, item = pairs[idx - first]
            _, key, text, raw = rows[idx - first]
            if item.__class__ not in _PLAIN:
                item = decode(text, raw, allow_pickle=allow_pickle)
            taken.append((index, key if key is not None else str(index), item))
        return taken

    def _row(self, index: int, item: Any) -> ItemRow:
        key: str | None = None
        shown = str(index)
        if self._keyfn is not None:
            made: Any = self._keyfn(item)
            if made.__class__ is not str:
                if isinstance(made, int) and not isinstance(made, bool):
                    made = str(made)
                else:
                    raise TypeError(
                        f"{self._where}: key= must return a string (or an int) for each item; "
                        f"it returned {made!r} for the item at position {index}"
                    )
            if "\x00" in made or has_surrogate(made):
                raise StorageError(
                    f"{self._where}: the key of the item at position {index} holds a NUL "
                    "character or a lone surrogate, which PostgreSQL text cannot store"
                )
            key = shown = made
        try:
            text, raw = encode(item, allow_pickle=self._allow_pickle)
        except Unstorable as exc:
            raise StorageError(
                f"{self._where}: scatter item {shown!r} (position {index}) cannot be stored: "
                f"{exc.problem}; the durable scatter keeps items as JSON so that any worker "
                "can run them: make the items JSON-able, or opt in to pickle with "
                "PostgresStore(allow_pickle=True)"
            ) from None
        return index, key, text, raw


def _is_reader(source: Any) -> TypeGuard[ItemReader[Any]]:
    """Whether ``source`` is read as an ItemReader (as ``open_feed`` decides)."""
    return isinstance(source, ItemReader) and not isinstance(source, Iterable | AsyncIterable)
