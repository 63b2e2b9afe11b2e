"""Tests of flowstone._core.ratelimit: the async token-bucket RateLimiter.

Most tests run on fake time: ``FakeTime`` sleeps by moving its clock at once, and
``ManualTime`` sleeps until the test moves its clock, so nothing here waits for real time
except one short check of the default clock.
"""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowstone._core.ratelimit import RateLimiter


class FakeTime:
    """A fake monotonic clock whose ``sleep`` moves it forward at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class ManualTime:
    """A fake monotonic clock whose ``sleep`` returns once :meth:`advance` passes it."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        self._sleepers.append((self.now + seconds, event))
        await event.wait()

    def wake(self, seconds: float) -> None:
        """Move the clock and wake the sleepers that are due, without waiting for them."""
        self.now += seconds
        due = [entry for entry in self._sleepers if entry[0] <= self.now + 1e-12]
        self._sleepers = [entry for entry in self._sleepers if entry not in due]
        for _, event in due:
            event.set()

    async def advance(self, seconds: float) -> None:
        """Move the clock, wake the sleepers that are due, and let everyone settle."""
        self.wake(seconds)
        await anyio.wait_all_tasks_blocked()


def limiter_on(clock: FakeTime | ManualTime, rate: float, **kwargs: object) -> RateLimiter:
    return RateLimiter(rate, clock=clock, sleep=clock.sleep, **kwargs)  # type: ignore[arg-type]


# -- construction ------------------------------------------------------------------------


def test_defaults_and_constructors() -> None:
    assert RateLimiter(10).burst == 10
    assert RateLimiter(0.5).burst == 1
    assert RateLimiter(2.7, burst=5).burst == 5
    minute = RateLimiter.per_minute(30)
    assert (minute.rate, minute.per, minute.burst) == (30, 60, 30)
    hour = RateLimiter.per_hour(3600, burst=2)
    assert (hour.rate, hour.per, hour.burst) == (3600, 3600, 2)
    second = RateLimiter.per_second(5)
    assert (second.rate, second.per, second.burst) == (5, 1, 5)
    assert repr(RateLimiter(5, 2, burst=3)) == "RateLimiter(rate=5, per=2, burst=3)"


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((0,), {}, "rate"),
        ((-1,), {}, "rate"),
        ((float("nan"),), {}, "rate"),
        ((float("inf"),), {}, "rate"),
        ((True,), {}, "rate"),
        (("5",), {}, "rate"),
        ((5, 0), {}, "per"),
        ((5, -1.0), {}, "per"),
        ((5,), {"burst": 0}, "burst"),
        ((5,), {"burst": 1.5}, "burst"),
        ((5,), {"burst": True}, "burst"),
    ],
)
def test_validation_names_the_argument(
    args: tuple[object, ...], kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        RateLimiter(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("tokens", [0, -1, 4, float("nan")])
async def test_token_counts_are_validated(tokens: float) -> None:
    limiter = RateLimiter(3)
    with pytest.raises(ValueError, match="tokens"):
        limiter.try_acquire(tokens)
    with pytest.raises(ValueError, match="tokens"):
        await limiter.acquire(tokens)


# -- the bucket --------------------------------------------------------------------------


async def test_burst_is_available_at_once_then_refills() -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, 2, burst=3)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2 per second
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    clock.now += 100  # an idle limiter holds at most `burst`
    assert limiter.available == 3
    await limiter.acquire(3)
    assert clock.sleeps == []


def test_hot_path_does_not_yield() -> None:
    limiter = RateLimiter(10)
    coroutine = limiter.acquire()
    with pytest.raises(StopIteration):
        coroutine.send(None)  # finished without suspending once


async def test_acquire_waits_exactly_for_the_missing_tokens() -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, 4, burst=4)
    await limiter.acquire(4)
    await limiter.acquire(2)
    assert clock.now == pytest.approx(0.5)


async def test_async_with_takes_one_token() -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, 1, burst=2)
    async with limiter:
        pass
    assert limiter.available == 1


@settings(deadline=None, max_examples=40)
@given(
    rate=st.floats(0.1, 1000),
    burst=st.integers(1, 20),
    n=st.integers(1, 60),
)
def test_n_acquisitions_take_at_least_n_minus_burst_over_rate(
    rate: float, burst: int, n: int
) -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, rate, burst=burst)

    async def main() -> None:
        for _ in range(n):
            await limiter.acquire()

    anyio.run(main)
    minimum = max(0, n - burst) / rate
    assert clock.now >= minimum * (1 - 1e-9)
    assert clock.now <= minimum * (1 + 1e-9) + 1e-9  # and no longer than needed


async def test_thousands_of_concurrent_tasks_are_paced_and_served_in_order() -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, 1000, burst=10)
    served: list[int] = []

    async def task(number: int) -> None:
        await limiter.acquire()
        served.append(number)

    async with anyio.create_task_group() as group:
        for number in range(3000):
            group.start_soon(task, number)
    assert served == list(range(3000))
    assert clock.now >= (3000 - 10) / 1000 * (1 - 1e-9)
    assert limiter.waiting == 0


async def test_waiters_are_served_before_newcomers() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 1, burst=2)
    assert limiter.try_acquire(2)
    async with anyio.create_task_group() as group:
        group.start_soon(limiter.acquire, 2)
        await anyio.wait_all_tasks_blocked()
        await clock.advance(1)
        assert limiter.available == pytest.approx(1)
        assert not limiter.try_acquire(1)  # the waiter came first
        await clock.advance(1)
    assert limiter.waiting == 0
    assert limiter.available == pytest.approx(0)


# -- cancellation ------------------------------------------------------------------------


async def test_cancelled_sole_waiter_takes_no_tokens() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 1, burst=1)
    assert limiter.try_acquire()
    async with anyio.create_task_group() as group:
        group.start_soon(limiter.acquire)
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 1
        group.cancel_scope.cancel()
    assert limiter.waiting == 0
    await clock.advance(1)
    assert limiter.available == pytest.approx(1)
    assert limiter.try_acquire()


async def test_cancelled_head_passes_its_turn_on() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 1, burst=1)
    assert limiter.try_acquire()
    done: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        done.append(name)

    async with anyio.create_task_group() as group:
        with anyio.CancelScope() as head_scope:
            async with anyio.create_task_group() as heads:
                heads.start_soon(waiter, "head")
                await anyio.wait_all_tasks_blocked()
                group.start_soon(waiter, "next")
                await anyio.wait_all_tasks_blocked()
                assert limiter.waiting == 2
                head_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 1
        await clock.advance(1)
        assert done == ["next"]
    assert limiter.available == pytest.approx(0)  # one token for one served waiter
    await clock.advance(1)
    assert limiter.try_acquire()


async def test_cancelled_middle_waiter_is_skipped() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 1, burst=1)
    assert limiter.try_acquire()
    done: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        done.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter, "first")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as middle_scope:
            async with anyio.create_task_group() as middle:
                middle.start_soon(waiter, "middle")
                await anyio.wait_all_tasks_blocked()
                group.start_soon(waiter, "last")
                await anyio.wait_all_tasks_blocked()
                assert limiter.waiting == 3
                middle_scope.cancel()
        assert limiter.waiting == 2
        await clock.advance(1)
        assert done == ["first"]
        await clock.advance(1)
        assert done == ["first", "last"]
    assert limiter.waiting == 0
    assert limiter.available == pytest.approx(0)


async def test_waiter_cancelled_just_after_its_turn_came_passes_it_on() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 1, burst=1)
    assert limiter.try_acquire()
    done: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        done.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter, "first")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as middle_scope:
            async with anyio.create_task_group() as middle:
                middle.start_soon(waiter, "middle")
                await anyio.wait_all_tasks_blocked()
                group.start_soon(waiter, "last")
                await anyio.wait_all_tasks_blocked()
                clock.wake(1)
                await anyio.lowlevel.checkpoint()  # "first" runs and hands "middle" its turn
                assert done == ["first"]
                middle_scope.cancel()  # before "middle" got to run
        await anyio.wait_all_tasks_blocked()
        assert limiter.waiting == 1
        await clock.advance(1)
        assert done == ["first", "last"]
    assert limiter.available == pytest.approx(0)


async def test_timeout_while_waiting_leaves_the_bucket_intact() -> None:
    clock = ManualTime()
    limiter = limiter_on(clock, 2, burst=2)
    assert limiter.try_acquire(2)
    with anyio.move_on_after(0):
        await limiter.acquire(2)
    assert limiter.waiting == 0
    await clock.advance(1)
    assert limiter.available == pytest.approx(2)


# -- real time and event loops -----------------------------------------------------------


async def test_default_clock_paces_in_real_time() -> None:
    limiter = RateLimiter.per_second(200, burst=1)
    started = time.monotonic()
    for _ in range(11):
        await limiter.acquire()
    assert time.monotonic() - started >= 10 / 200 - 1e-6


def test_one_limiter_serves_several_event_loops() -> None:
    clock = FakeTime()
    limiter = limiter_on(clock, 10, burst=5)

    async def use(count: int) -> None:
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(limiter.acquire)

    anyio.run(use, 10)
    anyio.run(use, 10)
    assert clock.now == pytest.approx((20 - 5) / 10)
