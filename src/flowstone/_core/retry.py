"""Retry policies: whether a failed attempt is tried again, and how long to wait first.

This module owns :class:`Retry`, an immutable policy with exponential backoff, a delay
cap and relative jitter, and :data:`NO_RETRY`, the policy that tries once. It decides and
computes only; the executor does the sleeping. Cancellation, ``KeyboardInterrupt`` and
``SystemExit`` are never retried, whatever the policy says.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NO_RETRY", "Retry"]

_DEFAULT_JITTER = 0.1
"""The relative jitter that ``jitter=True`` stands for: ±10 %."""

_NEVER_RETRIED: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
)

_ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]


def _exception_types(value: object, name: str) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ValueError(f"{name} must be an exception class or a tuple of them, not {value!r}")
    return types


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}")
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    return float(value)


def _cancelled_class() -> type[BaseException] | None:
    """Return the running async library's cancellation class, if one is running."""
    try:
        return anyio.get_cancelled_exc_class()
    except RuntimeError:  # no event loop in this thread
        return None


@dataclass(frozen=True, slots=True)
class Retry:
    """A retry policy: how many attempts, which errors, and the delays between attempts.

    The delay after failed attempt ``n`` is ``backoff * multiplier ** (n - 1)``, capped at
    ``max_delay``, then moved by up to ``±jitter`` of itself (and capped again).

    :param attempts: the total number of attempts, at least 1 (1 means no retry)
    :param backoff: the delay after the first failure, in seconds, at least 0
    :param multiplier: the factor each later delay grows by, at least 1
    :param max_delay: the largest delay, in seconds, at least 0
    :param jitter: the relative jitter, a fraction in [0, 1]; ``True`` means 0.1 (±10 %),
        ``False`` means none
    :param retry_on: the exception classes that are retried
    :param give_up_on: exception classes that are never retried, even if ``retry_on``
        matches them
    :raises ValueError: naming the field that is out of range or of the wrong kind
    """

    attempts: int = 1
    backoff: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 60.0
    jitter: float | bool = True
    retry_on: _ExceptionTypes = (Exception,)
    give_up_on: _ExceptionTypes = ()

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"attempts must be an int, not {self.attempts!r}")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")
        backoff = _number(self.backoff, "backoff")
        if not 0 <= backoff < math.inf:
            raise ValueError(f"backoff must be finite and at least 0, not {self.backoff}")
        multiplier = _number(self.multiplier, "multiplier")
        if not 1 <= multiplier < math.inf:
            raise ValueError(f"multiplier must be finite and at least 1, not {self.multiplier}")
        if _number(self.max_delay, "max_delay") < 0:
            raise ValueError(f"max_delay must be at least 0, not {self.max_delay}")
        if not isinstance(self.jitter, bool):
            if not 0 <= _number(self.jitter, "jitter") <= 1:
                raise ValueError(
                    f"jitter must be a bool or a fraction in [0, 1], not {self.jitter}"
                )
        object.__setattr__(self, "retry_on", _exception_types(self.retry_on, "retry_on"))
        object.__setattr__(self, "give_up_on", _exception_types(self.give_up_on, "give_up_on"))

    @classmethod
    def coerce(cls, value: Retry | int | None) -> Retry:
        """Turn a ``retry=`` argument into a policy.

        :param value: a policy; an int, the number of attempts with default backoff; or
            ``None`` for :data:`NO_RETRY`
        :return: the policy
        :raises TypeError: if ``value`` is none of these
        :raises ValueError: if the int is less than 1
        """
        if value is None:
            return NO_RETRY
        if isinstance(value, Retry):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(attempts=value)
        raise TypeError(f"retry must be a Retry, an int or None, not {type(value).__name__}")

    @property
    def jitter_fraction(self) -> float:
        """The relative jitter as a fraction: ``jitter`` with ``True`` read as 0.1."""
        if isinstance(self.jitter, bool):
            return _DEFAULT_JITTER if self.jitter else 0.0
        return float(self.jitter)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Decide whether to try again after an attempt failed.

        :param error: what the attempt raised
        :param attempt: the 1-based number of the attempt that failed
        :return: ``True`` if attempts remain, ``error`` matches ``retry_on`` and not
            ``give_up_on``, and it is not cancellation, ``KeyboardInterrupt`` or
            ``SystemExit``
        :raises ValueError: if ``attempt`` is less than 1
        """
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, not {attempt}")
        if attempt >= self.attempts or isinstance(error, _NEVER_RETRIED):
            return False
        # asyncio is not imported here for speed; if it is loaded, its cancellation never retries
        asyncio = sys.modules.get("asyncio")
        if asyncio is not None and isinstance(error, asyncio.CancelledError):
            return False
        cancelled = _cancelled_class()
        if cancelled is not None and isinstance(error, cancelled):
            return False
        return isinstance(error, self.retry_on) and not isinstance(error, self.give_up_on)

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Return how long to wait after a failed attempt, jitter included.

        :param attempt: the 1-based number of the attempt that failed
        :param rng: the random source for jitter; the ``random`` module's by default
        :return: seconds, in ``[0, max_delay]``
        :raises ValueError: if ``attempt`` is less than 1
        """
        base = self._base_delay(attempt)
        fraction = self.jitter_fraction
        if fraction == 0 or base == 0:
            return base
        uniform = random.uniform if rng is None else rng.uniform
        jittered = base * (1 + uniform(-fraction, fraction))
        return float(min(self.max_delay, max(0.0, jittered)))

    def delays(self) -> Iterator[float]:
        """Yield the delays between the attempts, without jitter.

        :return: ``attempts - 1`` delays, the one after attempt 1 first
        """
        for attempt in range(1, self.attempts):
            yield self._base_delay(attempt)

    def _base_delay(self, attempt: int) -> float:
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, not {attempt}")
        if self.backoff == 0:
            return 0.0
        try:
            delay = self.backoff * self.multiplier ** (attempt - 1)
        except OverflowError:
            return float(self.max_delay)
        return float(min(self.max_delay, delay))


NO_RETRY = Retry()
"""The policy that tries once and never retries."""
