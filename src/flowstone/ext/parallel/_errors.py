"""The errors of parallel assets: bad definitions, failed branches, timeouts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowstone import AssetExecutionError, DefinitionError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BranchFailedError",
    "BranchTimeoutError",
    "ParallelDefinitionError",
    "ParallelTimeoutError",
    "UnknownBranchError",
]


class ParallelDefinitionError(DefinitionError):
    """A parallel asset or one of its branches is declared wrongly.

    :param asset: the parallel asset's name, when known
    :param reason: what is wrong
    """

    def __init__(self, asset: str | None, reason: str) -> None:
        self.asset = asset
        self.reason = reason
        where = f"parallel asset {asset!r}: " if asset else ""
        super().__init__(f"{where}{reason}")


class UnknownBranchError(ParallelDefinitionError):
    """A branch names a terminal asset that is not in the pipeline."""

    def __init__(self, asset: str, branch: str, final: str) -> None:
        self.branch = branch
        self.final = final
        super().__init__(
            asset, f"branch {branch!r} ends at asset {final!r}, which is not in the pipeline"
        )


class BranchFailedError(AssetExecutionError):
    """A branch failed, which fails its parallel asset.

    The branch's own error is ``__cause__`` (and :attr:`branch_error`).

    :param asset: the parallel asset's name
    :param partition: the partition key, or ``None``
    :param run_id: the run's id
    :param attempt: the parallel asset's attempt
    :param branch: the failed branch's name
    :param final: the branch's terminal asset
    :param branch_error: the branch's error, or a description of it
    """

    def __init__(
        self,
        asset: str,
        partition: str | None,
        run_id: str,
        attempt: int,
        *,
        branch: str,
        final: str,
        branch_error: BaseException | str,
    ) -> None:
        self.branch = branch
        self.final = final
        self.branch_error = branch_error
        if isinstance(branch_error, str | AssetExecutionError):
            detail = str(branch_error)
        else:
            detail = f"{type(branch_error).__name__}: {branch_error}"
        super().__init__(
            asset,
            partition,
            run_id,
            attempt,
            f"branch {branch!r} (asset {final!r}) failed: {detail}",
        )


class BranchTimeoutError(BranchFailedError, TimeoutError):
    """A branch ran longer than its ``timeout``; :attr:`timeout` is that limit in seconds."""

    def __init__(
        self,
        asset: str,
        partition: str | None,
        run_id: str,
        attempt: int,
        *,
        branch: str,
        final: str,
        timeout: float,
    ) -> None:
        self.timeout = timeout
        super().__init__(
            asset,
            partition,
            run_id,
            attempt,
            branch=branch,
            final=final,
            branch_error=f"timed out after {timeout:g} s",
        )


class ParallelTimeoutError(AssetExecutionError, TimeoutError):
    """The overall ``timeout`` of a parallel asset expired while branches it needs still ran.

    :param pending: the needed branches that had not finished
    :param timeout: the overall timeout in seconds
    """

    def __init__(
        self,
        asset: str,
        partition: str | None,
        run_id: str,
        attempt: int,
        *,
        pending: Sequence[str],
        timeout: float,
    ) -> None:
        self.pending = tuple(pending)
        self.timeout = timeout
        names = ", ".join(repr(p) for p in self.pending)
        super().__init__(
            asset,
            partition,
            run_id,
            attempt,
            f"timed out after {timeout:g} s waiting for branches {names}",
        )
