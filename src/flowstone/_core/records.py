"""Plain data a store keeps: runs, materialization records, gates.

Records are frozen dataclasses of JSON-able fields so that any
:class:`~flowstone.protocols.MaterializationStore` (memory, PostgreSQL, …) can keep them
as they are. ``dataclasses.replace`` makes an updated copy.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

__all__ = [
    "GateRecord",
    "GateStatus",
    "MaterializationRecord",
    "RunRecord",
    "RunStatus",
    "Status",
]


class Status(enum.StrEnum):
    """The state of one asset (or branch, or item) in one run."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: Suspended (or downstream of a suspended asset): the run resumes it later.
    WAITING = "waiting"

    @property
    def terminal(self) -> bool:
        """Whether nothing more will happen to it in this execution of the run (a
        ``waiting`` asset is taken up again when the run is resumed)."""
        return self in (Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.WAITING)


class RunStatus(enum.StrEnum):
    """The state of a run as a whole."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Ended with assets waiting (suspended) and none failed: resume it to go on.
    WAITING = "waiting"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run: what was asked for and how it ended.

    :param run_id: the run's id; materializing the same id again resumes the run
    :param pipeline: the pipeline's name, if it has one
    :param selection: the asset names the run was asked to materialize
    :param partition: the run's partition key, or ``None``
    """

    run_id: str
    pipeline: str | None
    selection: tuple[str, ...]
    partition: str | None
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def replace(self, **changes: Any) -> RunRecord:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class MaterializationRecord:
    """What happened to one asset (and partition) in one run.

    ``data_version`` identifies the value: it is derived from the asset's ``code_version``,
    its partition and its inputs' data versions, so equal versions mean an equal recipe.
    ``reused`` is true when the run took a current stored value instead of computing.
    """

    run_id: str
    asset: str
    partition: str | None
    status: Status
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    data_version: str | None = None
    input_versions: Mapping[str, str] = field(default_factory=dict)
    io_manager: str | None = None
    reused: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def ok(self) -> bool:
        """Whether the asset succeeded."""
        return self.status is Status.SUCCEEDED

    def replace(self, **changes: Any) -> MaterializationRecord:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


class GateStatus(enum.StrEnum):
    """The state of a gate (a suspended asset waiting for a signal or an approval)."""

    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    SIGNALLED = "signalled"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def open(self) -> bool:
        """Whether the gate still waits."""
        return self is GateStatus.WAITING


@dataclass(frozen=True, slots=True)
class GateRecord:
    """A gate: one asset of one run suspended until a signal or an approval.

    :param gate_id: the gate's unique id
    :param kind: ``"signal"`` or ``"approval"``
    :param created_at: when it opened
    :param expires_at: its absolute deadline (``None``: it never expires)
    :param resolved_at: when it closed, once closed
    :param resolved_by: who approved or rejected it, when someone did
    :param payload: what the signal or the approver sent, once resolved (JSON-able)
    :param reason: the approver's reason, or why it was cancelled or expired
    :param message: what the gate asks (shown to approvers)
    :param token_hash: the SHA-256 of its token (never the token itself)
    :param metadata: JSON-able details (the input versions it was opened for, say)
    """

    gate_id: str
    run_id: str
    asset: str
    partition: str | None
    kind: str
    status: GateStatus
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    payload: Any = None
    expires_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    message: str | None = None
    token_hash: str | None = field(default=None, repr=False)

    @property
    def waited(self) -> float | None:
        """Seconds from opening to closing, once closed."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.created_at).total_seconds()

    def replace(self, **changes: Any) -> GateRecord:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)
