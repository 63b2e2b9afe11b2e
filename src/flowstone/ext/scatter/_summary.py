"""The failure-threshold arithmetic and the summary a scatter leaves on its record.

Shared by every scatter coordinator, so that the in-process and the durable ones decide
alike:

* ``tolerated_failure`` as an ``int`` is a count: the scatter fails once more than that
  many items failed.
* As a ``float`` in ``[0, 1]`` it is a fraction of the total: the scatter fails once
  ``failed > fraction * total``. The fraction is read as the decimal it is written as
  (``0.29`` is exactly 29/100, not the binary float just below it), and the comparison is
  done in integers, so the decision is exact at the boundary: with 0.01 and 300 items,
  3 failures are tolerated and the 4th fails the scatter.
* While the total is unknown (a streaming source not yet read to its end) a fraction
  cannot be decided, except ``0.0``, which no failure satisfies; the decision is taken as
  soon as the source is exhausted and the total known, and at every failure after that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

__all__ = [
    "FIRST_ERRORS",
    "MAX_LISTED_FAILURES",
    "ScatterSummary",
    "allowed_failures",
    "check_tolerated_failure",
    "error_text",
    "threshold_exceeded",
]

#: How many failures a :class:`ScatterFailureThresholdExceeded` carries.
FIRST_ERRORS = 10
#: How many failed items a summary lists (keys and errors); the counts are always complete.
MAX_LISTED_FAILURES = 100


def error_text(error: BaseException) -> str:
    """``"Type: message"`` of a failure, as results, events and summaries show it."""
    return f"{type(error).__name__}: {error}"


def check_tolerated_failure(value: object) -> int | float:
    """Validate a ``tolerated_failure`` setting and return it.

    :param value: an ``int`` of at least 0 (a count) or a ``float`` in ``[0, 1]`` (a fraction)
    :return: the value, unchanged
    :raises ValueError: naming ``tolerated_failure`` when it is neither
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            "tolerated_failure must be an int (a count of items) or a float in [0, 1] "
            f"(a fraction of the items), not {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"tolerated_failure must be at least 0, not {value}")
        return value
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"tolerated_failure as a float is a fraction in [0, 1], not {value!r}; "
            "use an int for a count of items"
        )
    return value


def _fraction(value: float) -> Fraction:
    return Fraction(repr(value))  # the decimal the user wrote, not the nearest binary float


def allowed_failures(tolerated: int | float, total: int | None) -> int | None:
    """How many failed items ``tolerated`` allows, or ``None`` while that is undecided.

    :param tolerated: a count (``int``) or a fraction (``float``)
    :param total: the number of items, or ``None`` when not known yet
    :return: the largest number of failures that still succeeds; ``None`` for a fraction
        above 0 with an unknown total
    """
    if isinstance(tolerated, int):
        return tolerated
    if tolerated == 0.0:
        return 0
    if total is None:
        return None
    fraction = _fraction(tolerated)
    return (total * fraction.numerator) // fraction.denominator


def threshold_exceeded(failed: int, total: int | None, tolerated: int | float) -> bool:
    """Whether ``failed`` failures exceed ``tolerated`` (see the module's rules).

    :param failed: items that failed so far
    :param total: all items, or ``None`` when not known yet
    :param tolerated: a count (``int``) or a fraction (``float``)
    :return: ``True`` when the scatter must stop
    """
    allowed = allowed_failures(tolerated, total)
    return allowed is not None and failed > allowed


@dataclass(frozen=True, slots=True)
class ScatterSummary:
    """How a scatter went: counts, and the failed items (the first ``MAX_LISTED_FAILURES``).

    :param total: items seen (all of them, unless the scatter was stopped)
    :param succeeded: items that succeeded
    :param failed: items that failed after their retries
    :param retried: items that needed more than one attempt (each counted once)
    :param failures: ``(key, "Type: message")`` of failed items, in the order they failed
    :param duration: seconds the scatter took
    """

    total: int
    succeeded: int
    failed: int
    retried: int = 0
    failures: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able data, as stored in the record's ``scatter`` metadata."""
        data: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "failures": [{"key": key, "error": error} for key, error in self.failures],
        }
        if self.failed > len(self.failures):
            data["failures_truncated"] = True
        data["duration"] = round(self.duration, 6)
        return data
