"""The ledger of items the starting process runs before storing them: wherever results are
written in whatever order, the checkpoint never passes an item that is not stored, a
reader's checkpoint stands at a page boundary with that page's cursor, and the source counts
as read only once everything is stored."""

from __future__ import annotations

import random

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.ext.scatter import scatter
from flowstone.protocols import ItemPage

asyncpg = pytest.importorskip("asyncpg")

from flowstone.ext.postgres import PostgresStore  # noqa: E402 - after the skip
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator  # noqa: E402
from flowstone.ext.postgres._scatter_local import LocalLedger  # noqa: E402


def _pages(sizes: list[int], start: int = 0) -> list[tuple[int, int]]:
    pages = []
    for size in sizes:
        pages.append((start, start + size))
        start += size
    return pages


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    local_share=st.lists(st.integers(0, 12), min_size=8, max_size=8),
    reader=st.booleans(),
    seed=st.integers(0, 2**32),
    resumed_at=st.integers(0, 5),
)
def test_the_checkpoint_never_passes_an_unstored_item(
    sizes: list[int], local_share: list[int], reader: bool, seed: int, resumed_at: int
) -> None:
    rng = random.Random(seed)
    cursor0 = f"c{resumed_at}" if reader and resumed_at else None
    ledger = LocalLedger(resumed_at, cursor0)
    stored: set[int] = set(range(resumed_at))
    cursors = {resumed_at: cursor0}
    unwritten: list[int] = []  # taken here, result not written
    pages = _pages(sizes, resumed_at)

    def check(enumerated: int, cursor: str | None) -> None:
        assert all(i in stored for i in range(enumerated)), "checkpoint passes an unstored item"
        if reader:
            assert enumerated in cursors and cursors[enumerated] == cursor

    def write_some(last_page: bool) -> None:
        rng.shuffle(unwritten)
        count = rng.randint(0, len(unwritten))
        batch, unwritten[:] = unwritten[:count], unwritten[count:]
        writing = ledger.ranges(batch)
        enumerated, cursor = ledger.checkpoint(writing)
        last = ledger.complete(writing)
        stored.update(batch)
        check(enumerated, cursor)
        if last:
            assert last_page and not unwritten
            assert all(i in stored for i in range(ledger.read))
        ledger.written(writing, last=last)

    for number, (start, end) in enumerate(pages):
        last_page = number == len(pages) - 1
        take = min(local_share[number], end - start)
        if take:
            ledger.take(start, start + take)
            unwritten.extend(range(start, start + take))
        # The rest of the page is inserted pending: stored with the checkpoint statement.
        stored.update(range(start + take, end))
        cursor = None if last_page else f"c{end}"
        cursors[end] = cursor
        ledger.advance(end, cursor, page=reader, last=last_page)
        enumerated, at = ledger.checkpoint()
        check(enumerated, at)
        write_some(last_page)
    while unwritten:
        write_some(True)
    total = pages[-1][1]
    assert ledger.complete()
    assert ledger.checkpoint() == (total, None)
    assert ledger.total == total


def test_the_end_is_due_once_and_only_when_everything_is_stored() -> None:
    ledger = LocalLedger(0, None)
    ledger.take(0, 4)
    ledger.advance(4, None, page=False, last=True)
    assert not ledger.due()
    first = ledger.ranges([0, 1])
    ledger.written(first, last=False)
    assert ledger.checkpoint() == (0, None)  # a range counts as stored once all of it is
    assert not ledger.due()
    rest = ledger.ranges([3, 2])
    assert ledger.complete(rest)
    ledger.written(rest, last=False)
    assert ledger.due()  # the flush did not record the end: somebody must
    ledger.final_sent = True
    assert not ledger.due()


def test_many_ranges_are_trimmed_as_they_are_written() -> None:
    ledger = LocalLedger(0, None)
    for start in range(0, 3000, 3):
        ledger.take(start, start + 3)
    ledger.advance(3000, None, page=False, last=False)
    for start in range(0, 2997, 3):
        ledger.written(ledger.ranges([start, start + 1, start + 2]), last=False)
    assert ledger.checkpoint() == (2997, None)
    ledger.written(ledger.ranges([2999, 2997, 2998]), last=False)
    assert ledger.checkpoint() == (3000, None)
    assert not ledger.complete()


def test_a_flush_in_flight_keeps_its_ranges_while_another_trims_the_front() -> None:
    """Flushers take their ranges, await the database, then count them written; one that
    finishes meanwhile may trim the front of the ledger without invalidating the others."""
    ledger = LocalLedger(0, None)
    for start in range(0, 3000, 3):
        ledger.take(start, start + 3)
    ledger.advance(3000, None, page=False, last=True)
    slow = ledger.ranges([1500, 1501, 2999, 2997, 2998])  # written last
    for start in range(0, 2997, 3):
        if start != 1500:
            ledger.written(ledger.ranges(range(start, start + 3)), last=False)
    ledger.written(ledger.ranges([1502]), last=False)
    assert ledger.checkpoint() == (1500, None)
    assert not ledger.complete()
    assert ledger.complete(slow)
    ledger.written(slow, last=True)
    assert ledger.checkpoint() == (3000, None)
    assert not ledger.due()


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=260, max_size=600),
    seed=st.integers(0, 2**32),
    flushers=st.integers(2, 4),
)
def test_interleaved_flushers_never_pass_an_unstored_item(
    sizes: list[int], seed: int, flushers: int
) -> None:
    """Several flushes in flight at once, finishing in any order: each checkpoint passes
    only items stored before it or with it, and every item ends counted exactly once."""
    rng = random.Random(seed)
    ledger = LocalLedger(0, None)
    pages = _pages(sizes)
    total = pages[-1][1]
    for start, end in pages:
        ledger.take(start, end)
    ledger.advance(total, None, page=False, last=True)
    unwritten = list(range(total))
    rng.shuffle(unwritten)
    unwritten.sort(key=lambda i: i + rng.randint(0, 40))  # roughly in order, as they finish
    stored: set[int] = set()
    in_flight: list[tuple[list[int], dict[int, int], bool]] = []

    def first_unstored(done: set[int]) -> int:
        return next((i for i in range(total) if i not in done), total)

    ended = 0
    while unwritten or in_flight:
        if unwritten and (len(in_flight) < flushers and rng.random() < 0.6 or not in_flight):
            count = rng.randint(1, 30)
            batch, unwritten[:] = unwritten[:count], unwritten[count:]
            writing = ledger.ranges(batch)
            enumerated, _ = ledger.checkpoint(writing)
            last = ledger.complete(writing)
            assert enumerated <= first_unstored(stored | set(batch))
            if last:
                assert not unwritten and not in_flight
            in_flight.append((batch, writing, last))
            continue
        batch, writing, last = in_flight.pop(rng.randrange(len(in_flight)))
        stored.update(batch)
        ledger.written(writing, last=last)
        ended += last
        enumerated, _ = ledger.checkpoint()
        assert enumerated <= first_unstored(stored)
    assert stored == set(range(total))
    assert ledger.checkpoint() == (total, None)
    assert ledger.complete()
    assert ended + ledger.due() == 1


class _CountingReader:
    """An ItemReader over ``range(n)`` with cursors ``"<offset>"``."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
        start = int(cursor) if cursor else 0
        end = min(self.n, start + limit)
        return ItemPage(list(range(start, end)), str(end) if end < self.n else None)

    async def count(self) -> int | None:
        return None


@pytest.mark.postgres
async def test_a_reader_scatter_with_concurrent_flushes_stores_every_item_once(
    pg_dsn: str, pg_schema: str
) -> None:
    """One-item reader pages make one range each, far more than the ledger keeps before it
    trims its front, and three flushers write results at once: each flush counts down its
    own ranges, whatever another one trimmed meanwhile (this failed with an IndexError)."""
    runs: list[int] = []

    @fs.asset
    @scatter(reader=_CountingReader(1500), max_concurrent=6, page_size=1)
    async def paged(item: int) -> int:
        runs.append(item)
        await anyio.sleep(0)
        return item

    store = PostgresStore(pg_dsn, schema=pg_schema, max_size=6)
    coordinator = PostgresScatterCoordinator(store, lease=2)
    runtime = fs.Runtime(store=store)
    runtime.coordinators.register("scatter", coordinator)
    async with runtime:
        result = await runtime.materialize([paged])
        assert result["paged"] == list(range(1500))
        assert sorted(runs) == list(range(1500))
        async with store.pool.acquire() as conn:
            barrier = await conn.fetchrow(
                f'SELECT enumerated, source_done, total FROM "{pg_schema}".scatter_barriers'
            )
            rows = await conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".scatter_items')
    assert barrier is not None and tuple(barrier) == (1500, True, 1500)
    assert rows == 1500
