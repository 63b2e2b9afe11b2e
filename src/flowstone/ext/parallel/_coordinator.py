"""The in-process parallel coordinator: runs branches in one task group, then the join.

Each branch materializes its terminal asset through the run (``invocation.run.materialize``)
inside its own cancel scope, so that the coordinator can cancel one branch, time it out, or
cancel the rest when the failure mode says the outcome is decided. Branch records are kept
in memory, per runtime (one coordinator instance serves one runtime).
"""

from __future__ import annotations

import inspect
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from flowstone import ExecutionError, InvalidAssetError, SkipAsset, Status
from flowstone.protocols import BranchRecord

from ._errors import BranchFailedError, BranchTimeoutError, ParallelTimeoutError
from ._events import BranchFinished, BranchStarted
from ._outcomes import Branches, BranchOutcome
from ._spec import Branch, ParallelSpec

if TYPE_CHECKING:
    from flowstone.protocols import AssetOutcome, Invocation

__all__ = ["InProcessParallelCoordinator"]


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


class InProcessParallelCoordinator:
    """Executes parallel assets in the current process and keeps branch records in memory.

    Registered by default for the ``"parallel"`` kind. Implements
    :class:`~flowstone.protocols.ParallelCoordinator`.
    """

    def __init__(self) -> None:
        self._records: dict[tuple[str, str, str | None], dict[str, BranchRecord]] = {}

    async def save_branch(self, record: BranchRecord) -> None:
        """Insert or replace the record of one branch (by run, asset, partition and branch)."""
        key = (record.run_id, record.asset, record.partition)
        self._records.setdefault(key, {})[record.branch] = record

    async def branches(self, run_id: str, asset: str, partition: str | None) -> list[BranchRecord]:
        """The branch records of a parallel asset in a run, in the order branches started."""
        return list(self._records.get((run_id, asset, partition), {}).values())

    async def execute(self, invocation: Invocation) -> Any:
        """Run the branches, decide by the failure mode, then call the join.

        :return: the join's value (for an asset without ``branches`` parameter, the join is
            called without it)
        :raises BranchFailedError: a branch failed and the failure mode does not tolerate it
        :raises ParallelTimeoutError: the overall timeout expired with needed branches pending
        :raises SkipAsset: a required branch was skipped
        """
        spec = invocation.asset.kind_spec
        if not isinstance(spec, ParallelSpec):
            raise InvalidAssetError(
                invocation.asset.name,
                f"the parallel coordinator got a {invocation.asset.kind!r} asset",
            )
        branches = await _Execution(self, invocation, spec).run()
        if "branches" in inspect.signature(invocation.asset.fn).parameters:
            return await invocation.call(branches=branches)
        return await invocation.call()


class _State:
    """One branch's progress during one execution."""

    __slots__ = (
        "branch",
        "cancel_reason",
        "ended_at",
        "error",
        "reason",
        "scope",
        "started_at",
        "status",
        "timed_out",
        "value",
    )

    def __init__(self, branch: Branch) -> None:
        self.branch = branch
        self.scope = anyio.CancelScope()
        self.status = Status.PENDING
        self.value: Any = None
        self.error: BaseException | None = None
        self.reason: str | None = None
        self.cancel_reason: str | None = None
        self.timed_out = False
        self.started_at: datetime | None = None
        self.ended_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def outcome(self) -> BranchOutcome:
        return BranchOutcome(
            branch=self.branch.name,
            final=self.branch.final,
            status=self.status,
            value=self.value,
            error=self.error,
            reason=self.reason,
            required=self.branch.required,
            started_at=self.started_at,
            ended_at=self.ended_at,
        )


class _Execution:
    """The branches of one parallel asset in one attempt, and the decision they lead to."""

    def __init__(
        self,
        coordinator: InProcessParallelCoordinator,
        invocation: Invocation,
        spec: ParallelSpec,
    ) -> None:
        self.coordinator = coordinator
        self.invocation = invocation
        self.spec = spec
        self.asset = invocation.asset.name
        self.partition = invocation.context.partition
        self.run_id = invocation.context.run_id
        self.attempt = invocation.context.attempt
        self.states = {b.name: _State(b) for b in spec.branches}
        self.required = [s for s in self.states.values() if s.branch.required]
        self.failure: _State | None = None
        self.skip: _State | None = None

    # -- the whole ---------------------------------------------------------------------

    async def run(self) -> Branches:
        overall = self.spec.timeout if self.spec.timeout is not None else math.inf
        try:
            with anyio.move_on_after(overall) as deadline:
                async with anyio.create_task_group() as group:
                    for state in self.states.values():
                        group.start_soon(
                            self._run_branch, state, name=f"{self.asset} branch {state.branch.name}"
                        )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._finish_pending("cancelled: the parallel asset was cancelled")
                self._record_metadata()
            raise
        timed_out: list[str] = []
        if deadline.cancelled_caught:
            timed_out = await self._on_overall_timeout()
        self._record_metadata()
        if self.failure is not None:
            raise self._failure_error(self.failure) from self.failure.error
        if self.skip is not None:
            raise SkipAsset(
                f"required branch {self.skip.branch.name!r} was skipped: {self.skip.reason}"
            )
        if timed_out:
            assert self.spec.timeout is not None
            raise ParallelTimeoutError(
                self.asset,
                self.partition,
                self.run_id,
                self.attempt,
                pending=timed_out,
                timeout=self.spec.timeout,
            )
        return Branches({name: state.outcome() for name, state in self.states.items()})

    def _failure_error(self, state: _State) -> BranchFailedError:
        b = state.branch
        where = (self.asset, self.partition, self.run_id, self.attempt)
        if state.timed_out and b.timeout is not None:
            return BranchTimeoutError(*where, branch=b.name, final=b.final, timeout=b.timeout)
        error: BaseException | str = state.error if state.error is not None else "failed"
        return BranchFailedError(*where, branch=b.name, final=b.final, branch_error=error)

    async def _on_overall_timeout(self) -> list[str]:
        """Settle the branches the overall timeout interrupted; return the needed ones."""
        assert self.spec.timeout is not None
        message = f"the parallel timeout of {self.spec.timeout:g} s expired"
        needed: list[str] = []
        for state in self.states.values():
            if state.terminal:
                continue
            if self.spec.failure_mode == "partial" and not state.branch.required:
                await self._finish(
                    state, Status.SKIPPED, reason=f"cancelled: {message}", decide=False
                )
            else:
                needed.append(state.branch.name)
                await self._finish(state, Status.FAILED, error=TimeoutError(message), decide=False)
        return needed

    async def _finish_pending(self, reason: str) -> None:
        for state in self.states.values():
            if not state.terminal:
                await self._finish(state, Status.SKIPPED, reason=reason, decide=False)

    def _record_metadata(self) -> None:
        self.invocation.context.add_metadata(
            branches={name: state.outcome().to_metadata() for name, state in self.states.items()}
        )

    # -- one branch --------------------------------------------------------------------

    async def _run_branch(self, state: _State) -> None:
        b = state.branch
        if state.scope.cancel_called:  # the outcome was decided before this branch started
            await self._finish(state, Status.SKIPPED, reason=state.cancel_reason)
            return
        state.status = Status.RUNNING
        state.started_at = _now()
        self.invocation.run.emit(
            BranchStarted(
                run_id=self.run_id,
                asset=self.asset,
                partition=self.partition,
                branch=b.name,
                final=b.final,
                required=b.required,
            )
        )
        await self.coordinator.save_branch(self._record(state))
        outcome: AssetOutcome | None = None
        error: Exception | None = None
        scope = state.scope  # read again below: another task may cancel it meanwhile
        with scope:
            with anyio.move_on_after(b.timeout if b.timeout is not None else math.inf) as limit:
                try:
                    results = await self.invocation.run.materialize([b.final])
                except Exception as exc:  # the branch failed; the failure mode decides
                    error = exc
                else:
                    outcome = results.get(b.final) or self.invocation.run.outcome(b.final)
        succeeded = outcome is not None and outcome.status is Status.SUCCEEDED
        if scope.cancel_called and not succeeded:
            await self._finish(state, Status.SKIPPED, reason=state.cancel_reason)
        elif limit.cancel_called and not succeeded:
            state.timed_out = True
            timeout = b.timeout if b.timeout is not None else math.inf
            await self._finish(
                state,
                Status.FAILED,
                error=TimeoutError(f"branch {b.name!r} timed out after {timeout:g} s"),
            )
        elif error is not None:
            await self._finish(state, Status.FAILED, error=error)
        elif outcome is None:
            await self._finish(
                state,
                Status.FAILED,
                error=ExecutionError(f"the run returned no outcome for asset {b.final!r}"),
            )
        elif outcome.status is Status.SUCCEEDED:
            try:
                value = await self._value(b.final, outcome)
            except Exception as exc:  # the stored value could not be loaded
                await self._finish(state, Status.FAILED, error=exc)
            else:
                await self._finish(state, Status.SUCCEEDED, value=value)
        elif outcome.status is Status.SKIPPED:
            reason = f"asset {b.final!r} was skipped"
            if outcome.reason:
                reason += f": {outcome.reason}"
            await self._finish(state, Status.SKIPPED, reason=reason)
        else:
            failure = outcome.error or ExecutionError(f"asset {b.final!r} {outcome.status.value}")
            await self._finish(state, Status.FAILED, error=failure)

    async def _value(self, name: str, outcome: AssetOutcome) -> Any:
        """The value of a succeeded terminal asset, loaded when the run reused it unloaded."""
        del outcome
        return await self.invocation.run.value(name)

    async def _finish(
        self,
        state: _State,
        status: Status,
        *,
        value: Any = None,
        error: BaseException | None = None,
        reason: str | None = None,
        decide: bool = True,
    ) -> None:
        b = state.branch
        state.status = status
        state.value = value
        state.error = error
        state.reason = reason
        state.ended_at = _now()
        await self.coordinator.save_branch(self._record(state))
        outcome = state.outcome()
        self.invocation.run.emit(
            BranchFinished(
                run_id=self.run_id,
                asset=self.asset,
                partition=self.partition,
                branch=b.name,
                final=b.final,
                status=status.value,
                duration=outcome.duration or 0.0,
                required=b.required,
                error=error,
                reason=reason,
            )
        )
        if decide:
            self._decide(state)

    def _decide(self, state: _State) -> None:
        """Whether the outcome is now settled; if so, cancel the branches still running."""
        if self.failure is not None or self.skip is not None:
            return
        name = state.branch.name
        tolerant = self.spec.failure_mode == "partial" and not state.branch.required
        if state.status is Status.FAILED and not tolerant:
            self.failure = state
            self._cancel_pending(f"cancelled: branch {name!r} failed")
        elif (
            state.status is Status.SKIPPED and state.branch.required and state.cancel_reason is None
        ):
            self.skip = state
            self._cancel_pending(f"cancelled: required branch {name!r} was skipped")
        elif (
            self.spec.failure_mode == "partial"
            and self.required
            and all(s.terminal for s in self.required)
        ):
            self._cancel_pending("cancelled: the required branches finished")

    def _cancel_pending(self, reason: str) -> None:
        for state in self.states.values():
            if not state.terminal and not state.scope.cancel_called:
                state.cancel_reason = reason
                state.scope.cancel()

    def _record(self, state: _State) -> BranchRecord:
        return BranchRecord(
            run_id=self.run_id,
            asset=self.asset,
            partition=self.partition,
            branch=state.branch.name,
            final=state.branch.final,
            status=state.status,
            required=state.branch.required,
            started_at=state.started_at,
            ended_at=state.ended_at,
            error=_describe(state.error),
        )
