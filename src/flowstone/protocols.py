"""The extension points, for plugin authors: protocols, their record types, invocations.

``CURRENT_CONTEXT`` is the context variable behind :func:`flowstone.current_context`; a
coordinator that calls an asset's function without :meth:`Invocation.call` sets it.
``call_with_timeout`` and ``run_in_thread`` give a coordinator's own time limits the reach
of asset timeouts: plain functions in worker threads are abandoned at the deadline.

Implement one of these protocols and register it with a :class:`flowstone.Runtime` (or
through an entry-point group) to add a storage backend, a coordinator or an event sink.
An IO manager that stores values durably checks them with :func:`check_json` or
:func:`check_storable`, the rules the ``postgres`` IO manager and the in-memory IO manager's
strict mode share. A barrier store gathers the scalar results in :data:`AS_STORED` back
exactly as recorded, and opens a barrier with :func:`recipe_of` the asset's code and
inputs to start it over when they change.
"""

from ._core.assets import AssetKind as AssetKind
from ._core.assets import attach_kind as attach_kind
from ._core.assets import code_fingerprint as code_fingerprint
from ._core.barrier_store import AS_STORED as AS_STORED
from ._core.barrier_store import BarrierLease as BarrierLease
from ._core.barrier_store import BarrierStore as BarrierStore
from ._core.barrier_store import BarrierUnit as BarrierUnit
from ._core.barrier_store import SourceCheckpoint as SourceCheckpoint
from ._core.barrier_store import recipe_of as recipe_of
from ._core.check_store import CheckStore as CheckStore
from ._core.checks import CheckRecord as CheckRecord
from ._core.clock import Clock as Clock
from ._core.compression import CODECS as COMPRESSION_CODECS
from ._core.compression import DEFAULT_THRESHOLD as COMPRESSION_THRESHOLD
from ._core.compression import compress as compress
from ._core.compression import decompress as decompress
from ._core.compression import for_asset as compression_for_asset
from ._core.compression import resolve as resolve_compression
from ._core.context import _current as CURRENT_CONTEXT
from ._core.deadline import call_with_timeout as call_with_timeout
from ._core.deadline import run_in_thread as run_in_thread
from ._core.dynamic_partitions import DynamicPartitionStore as DynamicPartitionStore
from ._core.health import check_component as check_component
from ._core.invocation import AssetOutcome as AssetOutcome
from ._core.invocation import Invocation as Invocation
from ._core.invocation import RunHandle as RunHandle
from ._core.protocols import BarrierState as BarrierState
from ._core.protocols import BranchRecord as BranchRecord
from ._core.protocols import Coordinator as Coordinator
from ._core.protocols import EventSink as EventSink
from ._core.protocols import GateStore as GateStore
from ._core.protocols import HealthCheck as HealthCheck
from ._core.protocols import IOContext as IOContext
from ._core.protocols import IOManager as IOManager
from ._core.protocols import ItemPage as ItemPage
from ._core.protocols import ItemReader as ItemReader
from ._core.protocols import MaterializationStore as MaterializationStore
from ._core.protocols import ParallelCoordinator as ParallelCoordinator
from ._core.protocols import PartitionLister as PartitionLister
from ._core.protocols import PipelinedRecordStore as PipelinedRecordStore
from ._core.protocols import Plugin as Plugin
from ._core.protocols import RouteDecision as RouteDecision
from ._core.protocols import RoutingCoordinator as RoutingCoordinator
from ._core.protocols import RunTagger as RunTagger
from ._core.protocols import ScatterCoordinator as ScatterCoordinator
from ._core.protocols import ScatterItemResult as ScatterItemResult
from ._core.records import GateRecord as GateRecord
from ._core.records import GateStatus as GateStatus
from ._core.registry import Registry as Registry
from ._core.registry import import_string as import_string
from ._core.values import JsonCheck as JsonCheck
from ._core.values import check_json as check_json
from ._core.values import check_storable as check_storable
from ._core.values import restore_tuples as restore_tuples
from ._core.values import tuple_paths as tuple_paths

__all__ = (
    "AS_STORED",
    "AssetKind",
    "AssetOutcome",
    "BarrierLease",
    "BarrierState",
    "BarrierStore",
    "BarrierUnit",
    "BranchRecord",
    "COMPRESSION_CODECS",
    "COMPRESSION_THRESHOLD",
    "CURRENT_CONTEXT",
    "CheckRecord",
    "CheckStore",
    "Clock",
    "Coordinator",
    "DynamicPartitionStore",
    "EventSink",
    "GateRecord",
    "GateStatus",
    "GateStore",
    "HealthCheck",
    "IOContext",
    "IOManager",
    "Invocation",
    "ItemPage",
    "ItemReader",
    "JsonCheck",
    "MaterializationStore",
    "ParallelCoordinator",
    "PartitionLister",
    "PipelinedRecordStore",
    "Plugin",
    "Registry",
    "RouteDecision",
    "RoutingCoordinator",
    "RunHandle",
    "RunTagger",
    "ScatterCoordinator",
    "ScatterItemResult",
    "SourceCheckpoint",
    "attach_kind",
    "call_with_timeout",
    "check_component",
    "check_json",
    "check_storable",
    "code_fingerprint",
    "compress",
    "compression_for_asset",
    "decompress",
    "import_string",
    "recipe_of",
    "resolve_compression",
    "restore_tuples",
    "run_in_thread",
    "tuple_paths",
)
