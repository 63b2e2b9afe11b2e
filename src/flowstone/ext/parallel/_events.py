"""Events of parallel assets: a branch started, a branch finished."""

from __future__ import annotations

from dataclasses import dataclass

from flowstone.events import AssetEvent

__all__ = ["BranchFinished", "BranchStarted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchStarted(AssetEvent):
    """A branch of parallel asset ``asset`` started materializing its terminal asset ``final``."""

    branch: str
    final: str
    required: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class BranchFinished(AssetEvent):
    """A branch of parallel asset ``asset`` ended.

    ``status`` is ``"succeeded"``, ``"failed"`` or ``"skipped"``; ``error`` is the failure of a
    failed branch and ``reason`` says why a branch was skipped.
    """

    branch: str
    final: str
    status: str
    duration: float = 0.0
    required: bool = True
    error: BaseException | None = None
    reason: str | None = None
