"""The :class:`BarrierStore` protocol: where a scatter's items, claims and results are kept.

A *barrier* holds every item of one scatter (one run, asset and partition): its source
position, its key, and once it ran, its one terminal result. A barrier store only stores;
the scatter engine decides what runs where. What it stores:

* **the source checkpoint** — items are added page by page together with where reading the
  source stands (:class:`SourceCheckpoint`), in one atomic step, so a resumed scatter reads
  on from the last page that was stored, and no item is lost or added twice;
* **claims under leases** — a worker joins the store and gets a :class:`BarrierLease`. Its
  number is the *fencing token*: every claim and every result carries it, and it is never
  reused. A claim hands the lease pending units (:class:`BarrierUnit`: one item, or one
  batch) in source order; a unit is held until its results are recorded or it is released.
  While the worker renews its lease, nobody else can take its units; once the lease has
  run out (the worker died, or stopped renewing), :meth:`BarrierStore.recover` puts its
  units back to pending for any other lease, and :meth:`BarrierStore.renew` tells the
  late worker its lease is gone;
* **exactly one result per item** — :meth:`BarrierStore.record` keeps the first terminal
  result of an item and ignores later ones, whichever lease sends them. So a unit that ran
  twice (its first holder was fenced off after a pause, then finished anyway) is counted
  once, and the counts, the failure threshold and :meth:`BarrierStore.gather` agree;
* **items run before they are stored** — a worker alone on a barrier (no other lease could
  take its items, :meth:`BarrierStore.has_other_workers`) may run a page it read before
  storing it, then store the page, its results and the checkpoint after it in one step
  (:meth:`BarrierStore.add_finished`): one write per item instead of three (add, claim,
  record). A crash before that step loses only the work: the checkpoint is still before
  the page, so the page is read and run again. When another worker appears, it stores
  such a page at once, the items still running held by its lease;
* **the barrier's state** — counts, whether the failure threshold is exceeded (decided by
  the store on every record, so all workers see the same decision), and cancellation: a
  barrier that is not open hands out no more units.

Stores implement this protocol structurally; ``flowstone.ext.scatter.MemoryBarrierStore``
keeps barriers in memory, ``flowstone.ext.postgres.PostgresBarrierStore`` in PostgreSQL
(shared by processes on any machine). Both pass the shared contract suite in
``tests/ext/scatter/test_barrier_store_contract.py``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from .protocols import BarrierState, ScatterItemResult

__all__ = [
    "AS_STORED",
    "BarrierLease",
    "BarrierStore",
    "BarrierUnit",
    "SourceCheckpoint",
    "check_finished_page",
    "recipe_of",
]

#: The result types every barrier store gathers back exactly as they were recorded.
AS_STORED = (int, str, float, bool, type(None))


@dataclass(frozen=True, slots=True)
class BarrierLease:
    """A worker's membership of a barrier store, under which it claims and records.

    :param worker: the worker's number: unique in the store and never reused, it is the
        fencing token every claim and result carries
    :param seconds: how long the worker's claims outlive its last renewal
    """

    worker: int
    seconds: float


@dataclass(frozen=True, slots=True)
class BarrierUnit:
    """Items handed to one lease to run as one call: one item, or one batch.

    :param number: the unit's number: the item's source position, or the batch's number
    :param indexes: the source positions of its items, in order
    :param keys: their keys
    :param items: the items
    """

    number: int
    indexes: tuple[int, ...]
    keys: tuple[str, ...]
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SourceCheckpoint:
    """Where reading a barrier's source stands.

    :param read: items read and stored so far (the position a resumed reading starts at)
    :param cursor: the reader's cursor after them (``None``: positions are enough)
    :param exhausted: the source has no more items (the total is then ``read``)
    """

    read: int = 0
    cursor: str | None = None
    exhausted: bool = False


@runtime_checkable
class BarrierStore(Protocol):
    """Keeps scatter barriers: items, the source checkpoint, claims and results.

    See the module documentation for the contract. Every method may be called from any
    task; a store shared by processes gives each the same answers.
    """

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
        """Create the barrier, or return the existing one's state (a resumed scatter).

        :param tolerated_failure: a count (``int``) or fraction (``float``) of items that
            may fail; ``None`` is 0
        :param total: the number of items, when known up front
        :param recipe: what the barrier's items and results are valid for (the asset's
            code and input versions, see :func:`recipe_of`): a stored barrier of another
            recipe is started over, its items, results and checkpoint dropped (one stored
            without a recipe takes this one); ``None`` continues a stored barrier whatever
            its recipe
        :param metadata: the asset's metadata, where a store finds its storage options
            for the barrier's results (``PostgresBarrierStore``: ``"compression"``)
        :raises ValueError: ``tolerated_failure`` is out of range
        """
        ...

    async def add_items(
        self,
        barrier_id: str,
        items: Sequence[tuple[int, str, Any]],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Add one page of items, ``(index, key, item)``, pending, and move the source
        checkpoint to ``checkpoint``, as one step: both are stored, or neither.

        Adding an item again at the same index with the same key is harmless (a resumed
        reading); the checkpoint never moves backwards.

        :raises DuplicateScatterKeyError: a key is already stored at another index (nothing
            of the page is stored)
        """
        ...

    async def checkpoint(self, barrier_id: str) -> SourceCheckpoint:
        """Where reading the barrier's source stands."""
        ...

    async def check_items(self, barrier_id: str, items: Sequence[tuple[int, str, Any]]) -> None:
        """Refuse a page whose items this store could not store, before they run.

        A page run before it is stored (:meth:`add_finished`) is checked first, so that
        an item that fails can be kept with its page, or handed to another worker.

        :raises StorageError: naming the asset and the first item that cannot be stored
        """
        ...

    async def add_finished(
        self,
        barrier_id: str,
        lease: BarrierLease,
        items: Sequence[tuple[int, str, Any]],
        results: Sequence[ScatterItemResult],
        checkpoint: SourceCheckpoint,
    ) -> BarrierState:
        """Add one page of items that ``lease`` ran before storing them, with the terminal
        results it has, and move the source checkpoint to ``checkpoint``, as one step.

        An item with a result in ``results`` is stored terminal; one without is stored held
        by ``lease`` (it is still running it: its result comes through :meth:`record`, and
        it goes back to pending if the lease runs out). An item stored already keeps its
        result (the first one wins). A failed item keeps its item, so a reopened barrier
        runs it again.

        :return: the counts and the threshold decision after the page
        :raises DuplicateScatterKeyError: a key is already stored at another index (nothing
            of the page is stored)
        :raises StorageError: an item or a result cannot be stored (nothing is stored)
        :raises ValueError: a result is of no item of the page, or two are of one item
        """
        ...

    async def join(self, *, lease: float) -> BarrierLease:
        """Join as a worker whose claims last ``lease`` seconds past its last renewal."""
        ...

    async def renew(self, lease: BarrierLease) -> bool:
        """Extend the lease by its length from now.

        :return: ``False`` when the lease had already run out or ended: the worker must
            claim no more under it (units it held may be running elsewhere)
        """
        ...

    async def has_other_workers(self, lease: BarrierLease) -> bool:
        """Whether a lease other than ``lease`` is running (a worker that could claim
        pending items): when there is none, ``lease`` may run what it reads before storing
        it (:meth:`add_finished`)."""
        ...

    async def leave(self, lease: BarrierLease) -> None:
        """End the lease, handing back every unit it holds, in every barrier."""
        ...

    async def claim(self, barrier_id: str, lease: BarrierLease, limit: int) -> list[BarrierUnit]:
        """Hold up to ``limit`` pending units for ``lease``, in source order.

        :return: the units, or ``[]`` when none is pending or the barrier is not open
        """
        ...

    async def record(
        self,
        barrier_id: str,
        lease: BarrierLease | None,
        results: Sequence[ScatterItemResult],
    ) -> BarrierState:
        """Record terminal item results: an item keeps its first result, later ones are
        ignored (whichever lease sends them); an item not added yet is added with it.

        :param lease: the lease the results come under (``None``: from code that drives
            items itself, holding no lease)

        :return: the counts and the threshold decision after these results
        :raises StorageError: a result cannot be stored (nothing of the call is recorded)
        """
        ...

    async def release(self, barrier_id: str, lease: BarrierLease) -> None:
        """Hand back the units ``lease`` holds in the barrier: pending again, for anyone."""
        ...

    async def recover(self, barrier_id: str, lease: BarrierLease) -> int:
        """Put the units of leases that ran out back to pending (never ``lease``'s own).

        :return: how many items came back
        """
        ...

    def gather(self, barrier_id: str) -> AsyncIterator[ScatterItemResult]:
        """The terminal results, in source order.

        A succeeded result whose value is an ``int``, ``str``, ``float``, ``bool`` or
        ``None`` comes back as it was recorded (so a process that stored every result
        itself may gather from memory, see :data:`AS_STORED`)."""
        ...

    async def cancel(self, barrier_id: str, reason: str) -> None:
        """Mark the barrier cancelled: no unit is handed out any more."""
        ...

    async def reopen(self, barrier_id: str) -> BarrierState:
        """Open the barrier again after it exceeded its threshold or was cancelled (a
        retried scatter): failed items are pending again, succeeded ones keep their
        results."""
        ...

    async def state(self, barrier_id: str) -> BarrierState:
        """The barrier's counts and decisions now.

        :raises KeyError: no barrier has this id
        """
        ...


def check_finished_page(
    items: Sequence[tuple[int, str, Any]], results: Sequence[ScatterItemResult]
) -> None:
    """Check that the results for ``BarrierStore.add_finished`` are of the page's items,
    at most one each.

    :raises ValueError: a result is of no item of the page, or two are of one item
    """
    indexes = {index for index, _, _ in items}
    answered = {result.index for result in results}
    if len(results) != len(answered) or not answered <= indexes:
        extra = sorted(answered - indexes)[:5]
        raise ValueError(
            "add_finished takes at most one result per item of the page; results without "
            f"an item: {extra}, {len(results) - len(answered)} repeated"
        )


def recipe_of(code_version: str, partition: str | None, input_versions: Mapping[str, str]) -> str:
    """What makes a scatter barrier's items and results valid: the asset's code version,
    the partition and the versions of its inputs (a short digest)."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(code_version.encode())
    digest.update(b"\x00" + (partition or "").encode())
    for name in sorted(input_versions):
        digest.update(b"\x00" + name.encode() + b"=" + str(input_versions[name]).encode())
    return digest.hexdigest()
