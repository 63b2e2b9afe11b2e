"""Which assets of a run are claimed, running, done or cancelled (a part of the run).

:class:`RunClaims` is the bookkeeping the ready queue (:mod:`.scheduling`) and nested
materializations (a coordinator asking for an asset the run also computes) share: an
asset is claimed by one part of the run, the others wait for its outcome, and one claimed
but cancelled before it started is recorded as cancelled — not as final, since a later
part of the run (a retried parallel branch, say) may run it again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from .asset_outcomes import utc_now
from .invocation import AssetOutcome
from .records import MaterializationRecord, Status

if TYPE_CHECKING:
    from .assets import AssetDef
    from .pipeline import Pipeline

__all__ = ["RunClaims"]


class RunClaims:
    """The claims and outcomes of a run's assets (a base of the run, which builds the
    state)."""

    _pipeline: Pipeline
    _run_id: str
    _outcomes: dict[str, AssetOutcome]
    _running: set[str]
    _cancelled: dict[str, AssetOutcome]
    _waiters: dict[str, anyio.Event]
    #: Whether an outcome of this run (part) is waiting (its dependents wait behind it).
    _any_waiting: bool

    if TYPE_CHECKING:

        def _partition_of(self, asset_def: AssetDef[..., Any]) -> str | None: ...

    def is_done(self, name: str) -> bool:
        """Whether ``name`` has its outcome in this run."""
        return name in self._outcomes

    def claim(self, name: str) -> bool:
        """Mark ``name`` as running here, unless a nested materialization runs it."""
        if name in self._running:
            return False
        self._running.add(name)
        return True

    async def await_other(self, name: str) -> None:
        """Wait for ``name``, which another part of the run computes, to have its outcome."""
        if name not in self._outcomes:
            event = self._waiters.get(name)
            if event is None:
                event = self._waiters[name] = anyio.Event()
            await event.wait()
            if name not in self._outcomes:  # its computation was cancelled by its owner
                self._outcomes[name] = self._cancelled.get(name) or AssetOutcome(
                    name, Status.SKIPPED, reason="cancelled"
                )

    def abandon(self, name: str) -> None:
        """Record the claimed ``name``, which never started, as cancelled."""
        asset_def = self._pipeline[name]
        # Not a final outcome: a later part of the run (a retried parallel branch, say)
        # may run it again. The result shows it as cancelled unless it runs again.
        self._cancelled[name] = AssetOutcome(
            name,
            Status.SKIPPED,
            reason="cancelled",
            record=MaterializationRecord(
                run_id=self._run_id,
                asset=name,
                partition=self._partition_of(asset_def),
                status=Status.SKIPPED,
                ended_at=utc_now(),
                error="cancelled",
                code_version=asset_def.code_version,
            ),
        )
        self._running.discard(name)
        event = self._waiters.pop(name, None)
        if event is not None:
            event.set()

    def _done(self, name: str, outcome: AssetOutcome) -> None:
        self._outcomes[name] = outcome
        if outcome.status is Status.WAITING:
            self._any_waiting = True
        self._running.discard(name)
        event = self._waiters.pop(name, None)
        if event is not None:
            event.set()
