"""What a run returns: :class:`MaterializeResult`."""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .records import MaterializationRecord, RunStatus, Status

if TYPE_CHECKING:
    from .checks import CheckRecord
    from .invocation import AssetOutcome

__all__ = ["MaterializeResult"]


@dataclass(frozen=True, eq=False)
class MaterializeResult(Mapping[str, Any]):
    """The outcome of one run: a mapping of asset name to value, plus status and records.

    ``result["total"]`` is the value of a succeeded asset; ``result.records["total"]`` its
    materialization record (status, attempts, start, end, duration, error, metadata).

    :ivar run_id: the run's id (pass it again to resume the run)
    :ivar status: the run's :class:`RunStatus`
    :ivar selection: the asset names the run was asked for
    :ivar partition: the run's partition key
    :ivar duration: seconds the run took
    """

    run_id: str
    status: RunStatus
    selection: tuple[str, ...]
    partition: str | None
    duration: float
    outcomes: Mapping[str, AssetOutcome] = field(repr=False)
    resumed: bool = False

    @property
    def ok(self) -> bool:
        """Whether the run succeeded: no asset failed and none waits."""
        return self.status is RunStatus.SUCCEEDED

    @property
    def records(self) -> Mapping[str, MaterializationRecord]:
        """The materialization record of every asset the run touched."""
        return {n: o.record for n, o in self.outcomes.items() if o.record is not None}

    @property
    def values(self) -> Mapping[str, Any]:  # type: ignore[override]  # a mapping, not a view
        """The values the run holds, by asset name."""
        return {n: o.value for n, o in self.outcomes.items() if o.ok and o.value is not _NOT_LOADED}

    def _names(self, status: Status) -> tuple[str, ...]:
        return tuple(n for n, o in self.outcomes.items() if o.status is status)

    @property
    def succeeded(self) -> tuple[str, ...]:
        """Assets that succeeded (computed or reused)."""
        return self._names(Status.SUCCEEDED)

    @property
    def failed(self) -> tuple[str, ...]:
        """Assets that failed."""
        return self._names(Status.FAILED)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Assets that were skipped."""
        return self._names(Status.SKIPPED)

    @property
    def waiting(self) -> tuple[str, ...]:
        """Assets that wait: suspended ones, and those downstream of them. Materialize the
        same ``run_id`` again (or ``runtime.resume(run_id)``) to go on."""
        return self._names(Status.WAITING)

    def waiting_since(self, name: str) -> str | None:
        """When the waiting asset ``name`` was suspended (ISO 8601), if it says."""
        outcome = self.outcomes.get(name)
        if outcome is None or outcome.status is not Status.WAITING or outcome.record is None:
            return None
        since = outcome.record.metadata.get("waiting_since")
        return since if isinstance(since, str) else None

    @property
    def checks(self) -> Mapping[str, tuple[CheckRecord, ...]]:
        """The results of the checks run, by asset (``@fs.check``)."""
        return {n: o.checks for n, o in self.outcomes.items() if o.checks}

    @property
    def failed_checks(self) -> Mapping[str, tuple[CheckRecord, ...]]:
        """The checks that failed (``warn`` and ``error`` alike), by asset."""
        failed = {n: tuple(c for c in o.checks if not c.passed) for n, o in self.outcomes.items()}
        return {n: records for n, records in failed.items() if records}

    @property
    def errors(self) -> Mapping[str, BaseException]:
        """The error of each failed asset."""
        return {n: o.error for n, o in self.outcomes.items() if o.error is not None}

    def __getitem__(self, name: str) -> Any:
        """The value of asset ``name``.

        :raises KeyError: the asset did not succeed in this run, or its stored value was
            current and not loaded (use ``fs.load``)
        """
        outcome = self.outcomes.get(name)
        if outcome is None:
            raise KeyError(f"asset {name!r} was not part of run {self.run_id!r}")
        if outcome.status is not Status.SUCCEEDED:
            detail = f": {outcome.error!r}" if outcome.error is not None else ""
            if outcome.reason:
                detail = f": {outcome.reason}"
            raise KeyError(f"asset {name!r} has no value: it {outcome.status.value}{detail}")
        if outcome.value is _NOT_LOADED:
            raise KeyError(
                f"asset {name!r} was current in storage and not loaded by this run; "
                f"use await fs.load({name!r})"
            )
        return outcome.value

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __repr__(self) -> str:
        counts = f"{len(self.succeeded)} succeeded"
        if self.failed:
            counts += f", {len(self.failed)} failed"
        if self.skipped:
            counts += f", {len(self.skipped)} skipped"
        if self.waiting:
            shown = []
            for name in self.waiting:
                since = self.waiting_since(name)
                reason = self.outcomes[name].reason
                shown.append(name if since is None else f"{name} ({reason}) since {since}")
            counts += f", {len(self.waiting)} waiting: {', '.join(shown)}"
        ran = sum(len(records) for records in self.checks.values())
        if ran:
            failed = [f"{n}.{c.check}" for n, rs in self.failed_checks.items() for c in rs]
            counts += f"; {ran} check{'s' if ran > 1 else ''}"
            counts += f", {len(failed)} failed: {', '.join(failed)}" if failed else " passed"
        return f"<MaterializeResult run_id={self.run_id!r} status={self.status.value} ({counts})>"

    def _repr_html_(self) -> str:
        colors = {
            "succeeded": "#2e7d32",
            "failed": "#c62828",
            "skipped": "#9e9e9e",
            "waiting": "#ef6c00",
        }
        rows = []
        for name, outcome in self.outcomes.items():
            record = outcome.record
            status = outcome.status.value
            if record is not None and record.reused:
                status += " (reused)"
            duration = f"{record.duration:.3f}s" if record and record.duration is not None else ""
            note = outcome.reason or (repr(outcome.error) if outcome.error else "")
            since = self.waiting_since(name)
            if since is not None:
                note += f" (since {since})"
            checks = " ".join(
                f'<span style="color:{colors["succeeded" if c.passed else "failed"]}">'
                f"{'✓' if c.passed else '✗'} {html.escape(c.check)}</span>"
                for c in outcome.checks
            )
            rows.append(
                f"<tr><td>{html.escape(name)}</td>"
                f'<td style="color:{colors.get(outcome.status.value, "#000")}">{status}</td>'
                f"<td>{duration}</td><td>{checks}</td><td>{html.escape(note)}</td></tr>"
            )
        return (
            f"<div><b>run {html.escape(self.run_id)}</b>: {self.status.value} in "
            f"{self.duration:.3f}s<table><tr><th>asset</th><th>status</th><th>duration</th>"
            f"<th>checks</th><th>note</th></tr>{''.join(rows)}</table></div>"
        )


class _NotLoaded:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<not loaded>"


#: Marks the value of an asset reused from storage and not loaded (nothing needed it).
_NOT_LOADED: Any = _NotLoaded()
