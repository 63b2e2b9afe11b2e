"""``BarrierScatterCoordinator``: scatter assets whose items live in a barrier store.

Register it for the ``"scatter"`` kind to run every scatter asset on the barrier engine
with its barrier in ``store``::

    store = MemoryBarrierStore()
    rt = fs.Runtime(coordinators={"scatter": BarrierScatterCoordinator(store)})

An asset retry, or a run resumed with the same ``run_id``, then continues the scatter:
items that succeeded are not run again, reading the source resumes from the last stored
page, and the items that failed run again. A barrier stored for other code or inputs
(the asset's ``code_version``, its partition or an input's version changed) is started
over. Other engines join a running scatter's barrier
with :meth:`BarrierScatterCoordinator.work` (or :func:`work_on_barrier`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowstone._core.barrier_store import recipe_of

from ._barrier_scatter import (
    DEFAULT_LEASE,
    BarrierScatter,
    barrier_id_of,
    refuse_batches,
    work_on_barrier,
)
from ._coordinator import (
    dependency_values,
    pinned_coordinator,
    scatter_reporter,
    scatter_source,
    scatter_spec_of,
)
from ._runner import ItemRunner, invocation_call

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from flowstone._core.barrier_store import BarrierStore
    from flowstone.protocols import Invocation

    from ._summary import ScatterSummary

__all__ = ["BarrierScatterCoordinator"]


class BarrierScatterCoordinator:
    """Runs scatter assets with their items in a barrier store (see the module docs).

    :param store: where the barriers are kept
    :param lease: seconds a process's claims outlive its last renewal
    :param flush_interval: seconds a finished result may wait before it is written
    :param poll_interval: the longest wait between two looks at a barrier while idle
    :raises ValueError: an option is out of range
    """

    def __init__(
        self,
        store: BarrierStore,
        *,
        lease: float = DEFAULT_LEASE,
        flush_interval: float = 0.05,
        poll_interval: float = 0.5,
    ) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        if flush_interval < 0 or not poll_interval > 0:
            raise ValueError("flush_interval must be >= 0 and poll_interval positive")
        self.store = store
        self.lease = lease
        self.flush_interval = flush_interval
        self.poll_interval = poll_interval

    def __repr__(self) -> str:
        return f"BarrierScatterCoordinator({self.store!r}, lease={self.lease:g})"

    async def execute(self, invocation: Invocation) -> Any:
        """Run (or continue) the scatter asset of ``invocation``; return its gathered value.

        The summary goes on the asset's record as ``metadata["scatter"]``.

        :raises InvalidAssetError: the asset uses ``batch=``
        :raises ScatterFailureThresholdExceeded: more items failed than tolerated
        :raises BarrierCancelledError: the barrier was cancelled
        :raises DuplicateScatterKeyError: two items have the same key
        """
        spec = scatter_spec_of(invocation)
        delegate = pinned_coordinator(invocation, self)
        if delegate is not None:
            return await delegate.execute(invocation)
        context = invocation.context
        refuse_batches(context.asset, spec.batch)
        run = invocation.run
        source = scatter_source(invocation, spec, await dependency_values(invocation))
        call = invocation_call(invocation, own_task=True)
        runner = ItemRunner(call, retry=spec.retry, timeout=spec.timeout, limiter=spec.limiter())
        scatter = BarrierScatter(
            self.store,
            barrier_id_of(run.run_id, context.asset, context.partition),
            runner,
            run_id=run.run_id,
            asset=context.asset,
            partition=context.partition,
            tolerated_failure=spec.tolerated_failure,
            max_concurrent=spec.max_concurrent,
            key=spec.key,
            page_size=spec.page_size,
            gather=spec.gather,
            reporter=scatter_reporter(invocation, spec),
            lease=self.lease,
            flush_interval=self.flush_interval,
            poll_interval=self.poll_interval,
            attempt=context.attempt,
            recipe=recipe_of(
                invocation.asset.code_version, context.partition, invocation.input_versions
            ),
            metadata=invocation.asset.metadata,
        )
        try:
            return await scatter.run(source)
        finally:
            context.add_metadata(scatter=scatter.summary().as_dict())

    async def work(
        self,
        run_id: str,
        asset: str,
        partition: str | None,
        function: Callable[[Any], Awaitable[Any]],
        *,
        max_concurrent: int = 100,
    ) -> ScatterSummary:
        """Join the running scatter of ``asset`` in ``run_id`` as a worker: run its items
        through ``function(item)`` until nothing is left to claim.

        :return: what this worker did
        """

        async def call(key: str, item: Any, context: Any) -> Any:
            return await function(item)

        return await work_on_barrier(
            self.store,
            barrier_id_of(run_id, asset, partition),
            ItemRunner(call),
            max_concurrent=max_concurrent,
            lease=self.lease,
            flush_interval=self.flush_interval,
            poll_interval=self.poll_interval,
        )
