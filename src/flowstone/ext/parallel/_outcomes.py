"""What a join function receives: :class:`Branches` and each branch's :class:`BranchOutcome`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowstone import Status

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["BranchOutcome", "Branches"]


@dataclass(frozen=True, slots=True)
class BranchOutcome:
    """How one branch of a parallel asset ended.

    :param branch: the branch's name
    :param final: the branch's terminal asset
    :param status: ``Status.SUCCEEDED``, ``Status.FAILED`` or ``Status.SKIPPED``
    :param value: the terminal asset's value, when it succeeded
    :param error: the failure, when it failed
    :param reason: why it was skipped (its terminal asset was skipped, or it was cancelled)
    :param required: whether the branch was required
    :param started_at: when the branch started (``None`` if it never started)
    :param ended_at: when it ended
    """

    branch: str
    final: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    reason: str | None = None
    required: bool = True
    started_at: datetime | None = None
    ended_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the branch succeeded."""
        return self.status is Status.SUCCEEDED

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    def to_metadata(self) -> dict[str, Any]:
        """A JSON-able summary for the parallel asset's materialization record."""
        error = None if self.error is None else f"{type(self.error).__name__}: {self.error}"
        return {
            "final": self.final,
            "status": self.status.value,
            "required": self.required,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration": self.duration,
            "error": error,
            "reason": self.reason,
        }


class Branches(Mapping[str, Any]):
    """The branch results a join function receives in its ``branches`` parameter.

    As a mapping it holds each *succeeded* branch's value by branch name, so
    ``branches["maps"]`` is the value of the ``maps`` branch and ``branches.get("web")``
    is ``None`` when the optional ``web`` branch failed or was skipped.
    :attr:`outcomes` has every branch, whatever its status.

    :param outcomes: every branch's outcome, by branch name, in declaration order
    """

    __slots__ = ("_outcomes",)

    def __init__(self, outcomes: Mapping[str, BranchOutcome]) -> None:
        self._outcomes = dict(outcomes)

    @property
    def outcomes(self) -> Mapping[str, BranchOutcome]:
        """Every branch's outcome (succeeded, failed or skipped), by branch name."""
        return dict(self._outcomes)

    @property
    def succeeded(self) -> tuple[str, ...]:
        """Names of the branches that succeeded."""
        return self._names(Status.SUCCEEDED)

    @property
    def failed(self) -> tuple[str, ...]:
        """Names of the branches that failed."""
        return self._names(Status.FAILED)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Names of the branches that were skipped or cancelled."""
        return self._names(Status.SKIPPED)

    def _names(self, status: Status) -> tuple[str, ...]:
        return tuple(n for n, o in self._outcomes.items() if o.status is status)

    def __getitem__(self, name: str) -> Any:
        """The value of a succeeded branch.

        :raises KeyError: no branch has this name, or it did not succeed (the message says why)
        """
        outcome = self._outcomes.get(name)
        if outcome is None:
            known = ", ".join(repr(n) for n in self._outcomes) or "none"
            raise KeyError(f"no branch named {name!r} (branches: {known})")
        if outcome.status is not Status.SUCCEEDED:
            why = outcome.reason or (
                f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else ""
            )
            raise KeyError(f"branch {name!r} has no value: it {outcome.status.value}: {why}")
        return outcome.value

    def __iter__(self) -> Iterator[str]:
        return iter(self.succeeded)

    def __len__(self) -> int:
        return len(self.succeeded)

    def __contains__(self, name: object) -> bool:
        outcome = self._outcomes.get(name) if isinstance(name, str) else None
        return outcome is not None and outcome.status is Status.SUCCEEDED

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={o.status.value}" for n, o in self._outcomes.items())
        return f"Branches({parts})"
