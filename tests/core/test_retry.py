"""Tests of flowstone._core.retry: the Retry policy and NO_RETRY."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowstone._core.retry import NO_RETRY, Retry

policies = st.builds(
    Retry,
    attempts=st.integers(1, 30),
    backoff=st.floats(0, 100, allow_nan=False),
    multiplier=st.floats(1, 10, allow_nan=False),
    max_delay=st.floats(0, 1000, allow_nan=False),
    jitter=st.one_of(st.booleans(), st.floats(0, 1)),
)


def test_defaults_try_once() -> None:
    assert NO_RETRY == Retry()
    assert NO_RETRY.attempts == 1
    assert not NO_RETRY.should_retry(ValueError("boom"), 1)
    assert list(NO_RETRY.delays()) == []


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Retry().attempts = 3  # type: ignore[misc]


def test_schedule_without_jitter() -> None:
    policy = Retry(attempts=6, backoff=0.5, multiplier=3, max_delay=10, jitter=False)
    assert list(policy.delays()) == [0.5, 1.5, 4.5, 10.0, 10.0]
    assert policy.delay(1) == 0.5
    assert policy.delay(4) == 10.0
    assert isinstance(policy.delay(4), float)


def test_huge_attempt_number_is_capped_not_overflowing() -> None:
    policy = Retry(attempts=5000, backoff=1, multiplier=10, max_delay=30, jitter=False)
    assert policy.delay(4000) == 30.0
    assert Retry(backoff=0).delay(4000) == 0.0


def test_jitter_true_means_ten_percent() -> None:
    policy = Retry(backoff=10, max_delay=100)
    assert policy.jitter_fraction == 0.1
    assert Retry(jitter=False).jitter_fraction == 0.0
    assert Retry(jitter=0.25).jitter_fraction == 0.25
    delays = {policy.delay(1, rng=random.Random(seed)) for seed in range(50)}
    assert all(9.0 <= d <= 11.0 for d in delays)
    assert len(delays) > 1  # it does vary


def test_rng_makes_jitter_reproducible() -> None:
    policy = Retry(attempts=3, backoff=2, jitter=0.5)
    assert policy.delay(2, rng=random.Random(7)) == policy.delay(2, rng=random.Random(7))


def test_should_retry_respects_attempts_and_classes() -> None:
    policy = Retry(attempts=3, retry_on=(OSError, ValueError), give_up_on=FileNotFoundError)
    assert policy.should_retry(ConnectionError(), 1)
    assert policy.should_retry(ValueError(), 2)
    assert not policy.should_retry(ValueError(), 3)  # that was the last attempt
    assert not policy.should_retry(KeyError(), 1)
    assert not policy.should_retry(FileNotFoundError(), 1)
    assert policy.give_up_on == (FileNotFoundError,)


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError(), GeneratorExit()]
)
def test_never_retries_control_flow_errors(error: BaseException) -> None:
    policy = Retry(attempts=10, retry_on=BaseException)
    assert not policy.should_retry(error, 1)


async def test_never_retries_the_loops_cancellation() -> None:
    policy = Retry(attempts=10, retry_on=BaseException)
    assert not policy.should_retry(anyio.get_cancelled_exc_class()(), 1)
    assert policy.should_retry(RuntimeError(), 1)


def test_single_class_is_normalised_to_a_tuple() -> None:
    assert Retry(retry_on=ValueError) == Retry(retry_on=(ValueError,))
    assert Retry(retry_on=ValueError).retry_on == (ValueError,)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": 2.0}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"backoff": -0.1}, "backoff"),
        ({"backoff": float("inf")}, "backoff"),
        ({"backoff": "1"}, "backoff"),
        ({"multiplier": 0.9}, "multiplier"),
        ({"multiplier": float("nan")}, "multiplier"),
        ({"max_delay": -1}, "max_delay"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
        ({"retry_on": "ValueError"}, "retry_on"),
        ({"retry_on": (ValueError, int)}, "retry_on"),
        ({"give_up_on": ValueError()}, "give_up_on"),
    ],
)
def test_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_attempt_must_be_one_based() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Retry().delay(0)
    with pytest.raises(ValueError, match="attempt"):
        Retry().should_retry(ValueError(), 0)


def test_coerce() -> None:
    policy = Retry(attempts=4)
    assert Retry.coerce(policy) is policy
    assert Retry.coerce(None) is NO_RETRY
    assert Retry.coerce(3) == Retry(attempts=3)
    with pytest.raises(ValueError, match="attempts"):
        Retry.coerce(0)
    with pytest.raises(TypeError):
        Retry.coerce(True)
    with pytest.raises(TypeError):
        Retry.coerce("3")  # type: ignore[arg-type]


@given(policies)
def test_schedule_is_monotone_capped_and_sized(policy: Retry) -> None:
    delays = list(policy.delays())
    assert len(delays) == policy.attempts - 1
    assert delays == sorted(delays)
    assert all(0 <= d <= policy.max_delay for d in delays)
    assert delays == [
        Retry(**{**dataclasses.asdict(policy), "jitter": False}).delay(n)
        for n in range(1, policy.attempts)
    ]


@given(policies, st.integers(1, 200), st.integers(0, 2**32))
def test_jitter_stays_within_bounds(policy: Retry, attempt: int, seed: int) -> None:
    base = min(policy.max_delay, policy.backoff * policy.multiplier ** min(attempt - 1, 300))
    delay = policy.delay(attempt, rng=random.Random(seed))
    fraction = policy.jitter_fraction
    assert 0 <= delay <= policy.max_delay
    assert base * (1 - fraction) - 1e-9 <= delay <= base * (1 + fraction) + 1e-9


@given(
    st.integers(1, 10),
    st.integers(1, 12),
    st.sampled_from([ValueError("v"), KeyError("k"), OSError("o"), ZeroDivisionError()]),
)
def test_should_retry_property(attempts: int, attempt: int, error: Exception) -> None:
    policy = Retry(attempts=attempts, retry_on=(ValueError, OSError), give_up_on=(KeyError,))
    expected = attempt < attempts and isinstance(error, ValueError | OSError)
    assert policy.should_retry(error, attempt) is expected
