"""Parallel branches: an asset that materializes several sub-graphs at once, then joins them.

::

    from flowstone.ext.parallel import Branches, branch, parallel

    @fs.asset
    @parallel(
        branch("maps", final="generate_maps"),
        branch("news", final="front_pages", timeout=60),
        branch("web", final="process_keywords", required=False),
        failure_mode="partial",
        timeout=1800,
    )
    async def gathered(ctx: fs.Context, branches: Branches, region: str) -> dict:
        return {"maps": branches["maps"], "news": branches["news"], "region": region}

Each branch names the terminal asset of a sub-graph of the pipeline; the parallel asset
materializes every terminal (with its upstream) concurrently, in the same run and
partition, and calls the join with a :class:`Branches`. :func:`parallel_asset` declares a
parallel asset without a join function: its value is ``{branch name: value}``.

The coordinator registered as ``"parallel"`` executes these assets;
:class:`InProcessParallelCoordinator` is the default.
"""

from __future__ import annotations

from ._coordinator import InProcessParallelCoordinator
from ._errors import (
    BranchFailedError,
    BranchTimeoutError,
    ParallelDefinitionError,
    ParallelTimeoutError,
    UnknownBranchError,
)
from ._events import BranchFinished, BranchStarted
from ._outcomes import Branches, BranchOutcome
from ._spec import Branch, FailureMode, ParallelSpec, branch, parallel, parallel_asset

__all__ = (
    "Branch",
    "BranchFailedError",
    "BranchFinished",
    "BranchOutcome",
    "BranchStarted",
    "BranchTimeoutError",
    "Branches",
    "FailureMode",
    "InProcessParallelCoordinator",
    "ParallelDefinitionError",
    "ParallelSpec",
    "ParallelTimeoutError",
    "UnknownBranchError",
    "branch",
    "parallel",
    "parallel_asset",
)
