"""Scatter: run an asset's function once per item, with bounded concurrency, and gather.

``@scatter(...)`` (with ``@fs.asset``) makes an asset fan out over thousands or millions
of items: ``max_concurrent`` workers, rate limits, per-item retries and timeouts, tolerated
failures, batching and streaming sources, results gathered into the asset's value.
``scatter_map`` runs the same engine outside a pipeline. Each item's function gets an
:class:`ItemContext`: the asset's context with the item's ``scatter_key`` (and its batch).

For coordinator authors (a durable coordinator reuses these rather than copying them):

* :class:`ScatterSpec` and :class:`Batch` — the options, validated;
* :class:`ItemRunner`, :func:`invocation_call` — one item or batch with rate limit,
  timeout, retries and its own context;
* :func:`threshold_exceeded`, :func:`allowed_failures` — the tolerated-failure decision;
* :class:`ScatterSummary` — the record's ``metadata["scatter"]``;
* :class:`Batcher`, :func:`precompute_batches` — batching;
* :class:`OrderedStream`, :func:`call_gather` — gathering in source order with bounded
  memory, and calling a ``gather=`` function;
* :class:`ScatterReporter` — events and the progress bar;
* :class:`BarrierScatterCoordinator` — scatter assets whose items live in any
  :class:`~flowstone.protocols.BarrierStore` (resumable; shared with other engines through
  :func:`work_on_barrier`), run by :class:`BarrierScatter` on the :class:`BarrierEngine`;
* :class:`MemoryBarrierStore` — the in-memory :class:`~flowstone.protocols.BarrierStore`
  (items, source checkpoint, claims under leases, one result per item);
* :func:`open_feed` / :class:`ItemFeed` — sources read lazily, page by page;
* :func:`dependency_values`, :func:`pinned_coordinator` — the ``items=`` mapping and
  ``coordinator=`` pins;
* the events (:class:`ScatterStarted`, :class:`ScatterItemFinished`,
  :class:`ScatterProgress`, :class:`ScatterFinished`) and errors.
"""

from __future__ import annotations

from ._barrier_coordinator import BarrierScatterCoordinator as BarrierScatterCoordinator
from ._barrier_engine import BarrierEngine as BarrierEngine
from ._barrier_scatter import BarrierScatter as BarrierScatter
from ._barrier_scatter import barrier_id_of as barrier_id_of
from ._barrier_scatter import work_on_barrier as work_on_barrier
from ._batch import Batch as Batch
from ._batch import Batcher as Batcher
from ._batch import BatchInfo as BatchInfo
from ._batch import precompute_batches as precompute_batches
from ._coordinator import InProcessScatterCoordinator as InProcessScatterCoordinator
from ._coordinator import dependency_values as dependency_values
from ._coordinator import pinned_coordinator as pinned_coordinator
from ._coordinator import run_scatter as run_scatter
from ._coordinator import scatter_spec_of as scatter_spec_of
from ._decorator import scatter as scatter
from ._engine import ScatterEngine as ScatterEngine
from ._errors import BarrierCancelledError as BarrierCancelledError
from ._errors import BarrierLeaseLostError as BarrierLeaseLostError
from ._errors import BatchResultError as BatchResultError
from ._errors import DuplicateScatterKeyError as DuplicateScatterKeyError
from ._errors import InvalidBatchError as InvalidBatchError
from ._errors import ItemTimeoutError as ItemTimeoutError
from ._errors import ScatterFailureThresholdExceeded as ScatterFailureThresholdExceeded
from ._events import ScatterEvent as ScatterEvent
from ._events import ScatterFinished as ScatterFinished
from ._events import ScatterItemFinished as ScatterItemFinished
from ._events import ScatterProgress as ScatterProgress
from ._events import ScatterStarted as ScatterStarted
from ._gather import OrderedStream as OrderedStream
from ._gather import call_gather as call_gather
from ._gather import window_for as window_for
from ._item_context import ItemContext as ItemContext
from ._map import scatter_map as scatter_map
from ._memory_barriers import MemoryBarrierStore as MemoryBarrierStore
from ._progress import ScatterReporter as ScatterReporter
from ._runner import ItemRunner as ItemRunner
from ._runner import function_call as function_call
from ._runner import invocation_call as invocation_call
from ._sources import ItemFeed as ItemFeed
from ._sources import open_feed as open_feed
from ._spec import DEFAULT_MAX_CONCURRENT as DEFAULT_MAX_CONCURRENT
from ._spec import DEFAULT_PAGE_SIZE as DEFAULT_PAGE_SIZE
from ._spec import ScatterSpec as ScatterSpec
from ._summary import FIRST_ERRORS as FIRST_ERRORS
from ._summary import MAX_LISTED_FAILURES as MAX_LISTED_FAILURES
from ._summary import ScatterSummary as ScatterSummary
from ._summary import allowed_failures as allowed_failures
from ._summary import check_tolerated_failure as check_tolerated_failure
from ._summary import threshold_exceeded as threshold_exceeded

__all__ = (
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_PAGE_SIZE",
    "FIRST_ERRORS",
    "MAX_LISTED_FAILURES",
    "BarrierCancelledError",
    "BarrierEngine",
    "BarrierLeaseLostError",
    "BarrierScatter",
    "BarrierScatterCoordinator",
    "Batch",
    "BatchInfo",
    "BatchResultError",
    "Batcher",
    "DuplicateScatterKeyError",
    "InProcessScatterCoordinator",
    "ItemFeed",
    "ItemContext",
    "ItemRunner",
    "InvalidBatchError",
    "ItemTimeoutError",
    "MemoryBarrierStore",
    "OrderedStream",
    "ScatterEngine",
    "ScatterEvent",
    "ScatterFailureThresholdExceeded",
    "ScatterFinished",
    "ScatterItemFinished",
    "ScatterProgress",
    "ScatterReporter",
    "ScatterStarted",
    "ScatterSpec",
    "ScatterSummary",
    "allowed_failures",
    "barrier_id_of",
    "check_tolerated_failure",
    "call_gather",
    "dependency_values",
    "function_call",
    "invocation_call",
    "open_feed",
    "pinned_coordinator",
    "precompute_batches",
    "run_scatter",
    "scatter",
    "scatter_map",
    "scatter_spec_of",
    "threshold_exceeded",
    "work_on_barrier",
    "window_for",
)
