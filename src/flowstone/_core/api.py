"""Module-level operations on the current event loop's default runtime (or a given one)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio

from .backfill import BackfillResult, backfill_with
from .errors import RuntimeStateError
from .runtime import AssetState, Runtime, default_runtime

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .assets import AssetDef
    from .partitions import PartitionsDefinition
    from .pipeline import Pipeline
    from .result import MaterializeResult

__all__ = ["backfill", "exists", "invalidate", "load", "materialize", "materialize_sync", "status"]


async def materialize(
    assets: Any,
    select: Any = None,
    *,
    partition: str | None = None,
    force: bool = False,
    with_deps: bool = True,
    resources: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    max_concurrent: int | None = None,
    raise_on_error: bool = True,
    checks: bool = True,
    runtime: Runtime | None = None,
) -> MaterializeResult:
    """Materialize the selected assets (and their upstream) in one run.

    ``await fs.materialize(pipeline, select="total")``. Works inside any running event loop:
    a FastAPI handler, a notebook cell, a test. See :meth:`Runtime.materialize` for the
    parameters; ``runtime`` defaults to the loop's in-memory runtime.

    ``checks=False`` skips the checks of the assets (``@fs.check``).

    :return: the run's :class:`MaterializeResult` (``result["total"]``, ``result.ok``)
    :raises AssetExecutionError: an asset failed and ``raise_on_error`` is true
    :raises CheckFailedError: a value failed an ``error`` check and ``raise_on_error`` is true
    """
    rt = runtime if runtime is not None else default_runtime()
    return await rt.materialize(
        assets,
        select,
        partition=partition,
        force=force,
        with_deps=with_deps,
        resources=resources,
        run_id=run_id,
        max_concurrent=max_concurrent,
        raise_on_error=raise_on_error,
        checks=checks,
    )


def materialize_sync(assets: Any, select: Any = None, **options: Any) -> MaterializeResult:
    """Run :func:`materialize` to completion from synchronous code (scripts, CLIs).

    :raises RuntimeStateError: called inside a running event loop; ``await
        fs.materialize(...)`` there instead
    """
    import asyncio  # imported here: it is the slowest import of the stdlib

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeStateError(
            "materialize_sync() cannot run inside a running event loop; "
            "use `await fs.materialize(...)` instead"
        )
    return anyio.run(functools.partial(materialize, assets, select, **options))


async def load(
    asset: AssetDef[..., Any] | str,
    partition: str | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    runtime: Runtime | None = None,
) -> Any:
    """Load the stored value of an asset.

    :param options: passed to the asset's IO manager (``IOContext.options``), e.g.
        ``options={"columns": ["id", "total"]}`` to read two columns of a Parquet table
    :raises ValueNotFoundError: nothing is stored for it
    """
    return await (runtime or default_runtime()).load(asset, partition, options=options)


async def exists(
    asset: AssetDef[..., Any] | str, partition: str | None = None, *, runtime: Runtime | None = None
) -> bool:
    """Whether a value of the asset is stored."""
    return await (runtime or default_runtime()).exists(asset, partition)


async def status(
    assets: Any, partition: str | None = None, *, runtime: Runtime | None = None
) -> dict[str, AssetState]:
    """Whether each asset's stored value is ``current``, ``stale``, ``missing`` or ``skipped``."""
    return await (runtime or default_runtime()).status(assets, partition)


async def invalidate(
    asset: AssetDef[..., Any] | str,
    partition: str | None = None,
    *,
    downstream: Pipeline | None = None,
    runtime: Runtime | None = None,
) -> list[str]:
    """Mark an asset's stored value not current (and, given a pipeline, its downstream)."""
    return await (runtime or default_runtime()).invalidate(asset, partition, downstream=downstream)


async def backfill(
    assets: Any,
    select: Any = None,
    *,
    partitions: PartitionsDefinition | Iterable[str] | str,
    max_concurrent: int = 4,
    force: bool = False,
    resources: Mapping[str, Any] | None = None,
    runtime: Runtime | None = None,
    checks: bool = True,
) -> BackfillResult:
    """Materialize a selection for many partitions, ``max_concurrent`` at a time.

    Partitions whose selected assets are already current (or would be skipped again: a
    router's unchosen branch) are skipped unless ``force``;
    a failed partition does not stop the others.

    :param partitions: a partitions definition (all its keys), keys, or a single key
    :param checks: run the assets' checks (``@fs.check``) in each partition's run, as
        :func:`materialize` does; ``False`` skips them
    :return: ``succeeded``/``failed``/``skipped`` counts and per-partition outcomes
    """
    return await backfill_with(
        runtime or default_runtime(),
        assets,
        select,
        partitions=partitions,
        max_concurrent=max_concurrent,
        force=force,
        resources=resources,
        checks=checks,
    )
