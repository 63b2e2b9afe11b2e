"""scatter_map: the scatter engine outside a pipeline (sources, limits, failures, gather)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    DuplicateScatterKeyError,
    ItemTimeoutError,
    ScatterFailureThresholdExceeded,
    scatter_map,
    window_for,
)
from flowstone.protocols import ItemPage


async def double(item: int) -> int:
    return item * 2


class ListReader:
    """An ItemReader over a list: pages of ``limit`` items, the cursor is the next offset."""

    def __init__(self, items: list[int], *, count: bool = True) -> None:
        self.items = items
        self.cursors: list[str | None] = []
        self._count = count

    async def read_page(self, cursor: str | None, limit: int) -> ItemPage[int]:
        self.cursors.append(cursor)
        start = int(cursor) if cursor is not None else 0
        end = min(len(self.items), start + limit)
        await anyio.lowlevel.checkpoint()
        return ItemPage(self.items[start:end], str(end) if end < len(self.items) else None)

    async def count(self) -> int | None:
        return len(self.items) if self._count else None


async def test_results_in_source_order() -> None:
    async def jitter(item: int) -> int:
        for _ in range(item % 5):
            await anyio.lowlevel.checkpoint()
        return item * 2

    assert await scatter_map(jitter, range(50), max_concurrent=7) == [i * 2 for i in range(50)]


async def test_empty_source() -> None:
    assert await scatter_map(double, [], max_concurrent=3) == []


async def test_sync_function_runs_in_threads() -> None:
    import threading

    main = threading.get_ident()
    seen: set[int] = set()

    def work(item: int) -> int:
        seen.add(threading.get_ident())
        return item + 1

    assert await scatter_map(work, range(10), max_concurrent=4) == list(range(1, 11))
    assert main not in seen


async def test_generator_source_is_read_in_pages() -> None:
    pulled: list[int] = []

    def numbers() -> Iterator[int]:
        for i in range(25):
            pulled.append(i)
            yield i

    first_seen: list[int] = []

    async def work(item: int) -> int:
        if item == 0:
            first_seen.append(len(pulled))
        return item

    assert await scatter_map(work, numbers(), max_concurrent=2, page_size=10) == list(range(25))
    assert first_seen == [10]  # one page was read before the first item ran


async def test_async_iterable_source() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(20):
            await anyio.lowlevel.checkpoint()
            yield i

    assert await scatter_map(double, numbers(), max_concurrent=4) == [i * 2 for i in range(20)]


async def test_awaitable_source_of_items() -> None:
    async def load() -> list[int]:
        return [1, 2, 3]

    assert await scatter_map(double, load(), max_concurrent=2) == [2, 4, 6]


async def test_reader_pages_and_cursors() -> None:
    reader = ListReader(list(range(23)))
    assert await scatter_map(double, reader, max_concurrent=3, page_size=10) == [
        i * 2 for i in range(23)
    ]
    assert reader.cursors == [None, "10", "20"]


async def test_reader_is_read_lazily() -> None:
    reader = ListReader(list(range(100)), count=False)
    pages_when_started: dict[int, int] = {}

    async def work(item: int) -> int:
        pages_when_started[item] = len(reader.cursors)
        await anyio.lowlevel.checkpoint()
        return item

    await scatter_map(work, reader, max_concurrent=2, page_size=10)
    for item, pages in pages_when_started.items():
        assert pages <= item // 10 + 1


async def test_unknown_source_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="iterable"):
        await scatter_map(double, 42, max_concurrent=2)  # type: ignore[arg-type]


async def test_failures_within_tolerance_are_left_out() -> None:
    async def work(item: int) -> int:
        if item % 10 == 3:
            raise ValueError(f"bad {item}")
        return item

    result = await scatter_map(work, range(30), max_concurrent=5, tolerated_failure=3)
    assert result == [i for i in range(30) if i % 10 != 3]


async def test_threshold_exceeded_stops_the_scatter() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def work(item: int) -> int:
        started.append(item)
        if item in (1, 2):
            raise ValueError(f"bad {item}")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(item)
            raise
        return item

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(work, range(1000), max_concurrent=4, tolerated_failure=1)
    error = caught.value
    assert error.failed == 2
    assert error.succeeded == 0
    assert [key for key, _ in error.first_errors] == ["1", "2"]
    assert "ValueError: bad 1" in error.first_errors[0][1]
    assert isinstance(error, fs.AssetExecutionError)
    assert len(started) < 20  # nothing new started after the threshold was crossed
    assert sorted(cancelled) == sorted(set(started) - {1, 2})  # in-flight items were cancelled


async def test_fraction_threshold_waits_for_the_total_of_a_stream() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(100):
            yield i

    async def work(item: int) -> int:
        if item < 5:  # 5 early failures: > 1 % of what was seen, but = 5 % of the total
            raise ValueError("early")
        return item

    result = await scatter_map(work, numbers(), max_concurrent=3, tolerated_failure=0.05)
    assert len(result) == 95
    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(work, numbers(), max_concurrent=3, tolerated_failure=0.04)
    assert caught.value.total == 100


async def test_retry_counts_an_item_once() -> None:
    calls: dict[int, int] = {}

    async def flaky(item: int) -> int:
        calls[item] = calls.get(item, 0) + 1
        if calls[item] < 3 and item % 2:
            raise ConnectionError("again")
        return item

    result = await scatter_map(
        flaky, range(10), max_concurrent=3, retry=fs.Retry(attempts=3, backoff=0)
    )
    assert result == list(range(10))
    assert calls == {i: 3 if i % 2 else 1 for i in range(10)}


async def test_retry_gives_up_after_its_attempts() -> None:
    calls = 0

    async def broken(item: int) -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(broken, [1], max_concurrent=1, retry=fs.Retry(attempts=2, backoff=0))
    assert calls == 2
    assert caught.value.first_errors == (("0", "ConnectionError: down"),)


async def test_per_item_timeout() -> None:
    async def slow(item: int) -> int:
        if item == 2:
            await anyio.sleep_forever()
        return item

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(slow, range(4), max_concurrent=4, timeout=0.05)
    assert caught.value.first_errors[0][0] == "2"
    assert "ItemTimeoutError" in caught.value.first_errors[0][1]
    assert await scatter_map(
        slow, range(4), max_concurrent=4, timeout=0.05, tolerated_failure=1
    ) == [
        0,
        1,
        3,
    ]
    assert issubclass(ItemTimeoutError, TimeoutError)


async def test_rate_limiter_paces_the_items() -> None:
    now = 0.0
    starts: list[float] = []

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        now += seconds
        await anyio.lowlevel.checkpoint()

    limiter = fs.RateLimiter(2, per=1.0, burst=1, clock=clock, sleep=sleep)

    async def work(item: int) -> int:
        starts.append(now)
        return item

    assert await scatter_map(work, range(5), max_concurrent=5, rate=limiter) == list(range(5))
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])


async def test_rate_as_a_number_per_second() -> None:
    assert await scatter_map(double, range(5), max_concurrent=2, rate=1000) == [0, 2, 4, 6, 8]


async def test_custom_keys_and_duplicates() -> None:
    keys: list[str] = []

    async def gather(results: AsyncIterator[tuple[str, int]]) -> list[str]:
        async for key, _ in results:
            keys.append(key)
        return keys

    items = [{"id": "a"}, {"id": "b"}, {"id": 7}]
    await scatter_map(lambda o: _async_value(o), items, key=lambda o: o["id"], gather=gather)
    assert keys == ["a", "b", "7"]
    with pytest.raises(DuplicateScatterKeyError, match="'a'") as caught:
        await scatter_map(
            lambda o: _async_value(o), [{"id": "a"}, {"id": "a"}], key=lambda o: o["id"]
        )
    assert caught.value.key == "a"
    with pytest.raises(TypeError, match="key= must return a string"):
        await scatter_map(lambda o: _async_value(o), [1.5], key=lambda o: o)


async def _async_value(value: object) -> object:
    return value


async def test_lambda_returning_a_coroutine_is_awaited() -> None:
    # ``lambda o: coroutine`` is not an async function; its result is still awaited
    assert await scatter_map(lambda o: _async_value(o), [1, 2], max_concurrent=2) == [1, 2]


async def test_streaming_gather_sums_without_keeping_results() -> None:
    async def total(results: AsyncIterator[tuple[str, int]]) -> int:
        return sum([value async for _, value in results])

    assert await scatter_map(double, range(1000), max_concurrent=8, gather=total) == 999_000


async def test_streaming_gather_memory_is_bounded() -> None:
    started = 0
    lag: list[int] = []

    async def work(item: int) -> int:
        nonlocal started
        started += 1
        await anyio.lowlevel.checkpoint()
        return item

    async def slow_consumer(results: AsyncIterator[tuple[str, int]]) -> int:
        consumed = 0
        async for _ in results:
            consumed += 1
            lag.append(started - consumed)
            await anyio.sleep(0)
        return consumed

    assert await scatter_map(work, range(3000), max_concurrent=5, gather=slow_consumer) == 3000
    assert max(lag) <= window_for(5) + 5


async def test_gather_that_stops_early_still_runs_every_item() -> None:
    ran: list[int] = []

    async def work(item: int) -> int:
        ran.append(item)
        await anyio.lowlevel.checkpoint()
        return item

    async def first_three(results: AsyncIterator[tuple[str, int]]) -> list[int]:
        out: list[int] = []
        async for _, value in results:
            out.append(value)
            if len(out) == 3:
                break
        return out

    assert await scatter_map(work, range(500), max_concurrent=4, gather=first_three) == [0, 1, 2]
    assert sorted(ran) == list(range(500))


async def test_gather_error_fails_the_scatter() -> None:
    async def broken(results: AsyncIterator[tuple[str, int]]) -> int:
        async for _ in results:
            raise RuntimeError("gather broke")
        return 0

    with pytest.raises(RuntimeError, match="gather broke"):
        await scatter_map(double, range(100), max_concurrent=4, gather=broken)


async def test_async_generator_source_is_closed_when_stopped() -> None:
    closed = False

    async def numbers() -> AsyncIterator[int]:
        nonlocal closed
        try:
            for i in range(1000):
                yield i
        finally:
            closed = True

    async def failing(item: int) -> int:
        raise ValueError("no")

    with pytest.raises(ScatterFailureThresholdExceeded):
        await scatter_map(failing, numbers(), max_concurrent=2)
    assert closed


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"tolerated_failure": 1.5}, "tolerated_failure"),
        ({"tolerated_failure": -1}, "tolerated_failure"),
        ({"tolerated_failure": True}, "tolerated_failure"),
        ({"timeout": 0}, "timeout"),
        ({"rate": -1}, "rate"),
        ({"page_size": 0}, "page_size"),
        ({"retry": "x"}, "retry"),
    ],
)
async def test_invalid_options_name_the_option(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        await scatter_map(double, [1], **options)  # type: ignore[arg-type]


async def test_threshold_exceeded_with_a_streaming_gather() -> None:
    consumed: list[int] = []

    async def work(item: int) -> int:
        await anyio.lowlevel.checkpoint()
        if item == 30:
            raise ValueError("thirty")
        return item

    async def total(results: AsyncIterator[tuple[str, int]]) -> int:
        async for _, value in results:
            consumed.append(value)
        return sum(consumed)

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(work, range(10_000), max_concurrent=4, gather=total)
    assert caught.value.first_errors == (("30", "ValueError: thirty"),)
    assert consumed == list(range(len(consumed)))  # in order, and stopped early
    assert len(consumed) < 10_000


async def test_timeout_error_names_the_item_key() -> None:
    async def stuck(item: int) -> int:
        await anyio.sleep_forever()
        return item  # pragma: no cover

    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(stuck, ["x"], key=str, timeout=0.01)
    assert caught.value.first_errors == (
        ("x", "ItemTimeoutError: item 'x' timed out after 0.01 s"),
    )
    with pytest.raises(ScatterFailureThresholdExceeded) as caught:
        await scatter_map(stuck, ["x"], timeout=0.01)
    assert caught.value.first_errors == (
        ("0", "ItemTimeoutError: item '0' timed out after 0.01 s"),
    )
