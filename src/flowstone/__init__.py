"""flowstone: asyncio-native, embeddable, asset-first data orchestration.

``import flowstone as fs``; define assets with ``@fs.asset`` and ``await fs.materialize(...)``
them inside any running event loop. Plugins live in ``flowstone.ext``; extension-point
protocols in :mod:`flowstone.protocols`; lifecycle events in :mod:`flowstone.events`.
"""

import importlib as _importlib
import sys as _sys
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._core.api import backfill as backfill
    from ._core.api import exists as exists
    from ._core.api import invalidate as invalidate
    from ._core.api import load as load
    from ._core.api import materialize as materialize
    from ._core.api import materialize_sync as materialize_sync
    from ._core.api import status as status
    from ._core.assets import AssetDef as AssetDef
    from ._core.assets import AssetKind as AssetKind
    from ._core.assets import SkipAsset as SkipAsset
    from ._core.assets import Suspended as Suspended
    from ._core.assets import asset as asset
    from ._core.backfill import BackfillResult as BackfillResult
    from ._core.backfill import PartitionOutcome as PartitionOutcome
    from ._core.checks import CheckDef as CheckDef
    from ._core.checks import CheckFailedError as CheckFailedError
    from ._core.checks import CheckRecord as CheckRecord
    from ._core.checks import CheckResult as CheckResult
    from ._core.checks import InvalidCheckError as InvalidCheckError
    from ._core.checks import check as check
    from ._core.clock import SystemClock as SystemClock
    from ._core.context import Context as Context
    from ._core.context import Resources as Resources
    from ._core.context import current_context as current_context
    from ._core.dynamic_partitions import DynamicPartitions as DynamicPartitions
    from ._core.errors import AssetExecutionError as AssetExecutionError
    from ._core.errors import AssetTimeoutError as AssetTimeoutError
    from ._core.errors import ConfigurationError as ConfigurationError
    from ._core.errors import CycleError as CycleError
    from ._core.errors import DefinitionError as DefinitionError
    from ._core.errors import DuplicateAssetError as DuplicateAssetError
    from ._core.errors import ExecutionError as ExecutionError
    from ._core.errors import FlowstoneError as FlowstoneError
    from ._core.errors import InvalidAssetError as InvalidAssetError
    from ._core.errors import MissingExtraError as MissingExtraError
    from ._core.errors import MissingInputError as MissingInputError
    from ._core.errors import PartitionError as PartitionError
    from ._core.errors import PluginNotFoundError as PluginNotFoundError
    from ._core.errors import RunFailedError as RunFailedError
    from ._core.errors import RuntimeStateError as RuntimeStateError
    from ._core.errors import SelectionError as SelectionError
    from ._core.errors import StorageError as StorageError
    from ._core.errors import UnknownDependencyError as UnknownDependencyError
    from ._core.errors import ValueNotFoundError as ValueNotFoundError
    from ._core.health import ComponentHealth as ComponentHealth
    from ._core.health import HealthReport as HealthReport
    from ._core.health import HealthStatus as HealthStatus
    from ._core.memory import LoggingSink as LoggingSink
    from ._core.memory import MemoryEventSink as MemoryEventSink
    from ._core.memory import MemoryGateStore as MemoryGateStore
    from ._core.memory import MemoryIOManager as MemoryIOManager
    from ._core.memory import MemoryStore as MemoryStore
    from ._core.multi_partitions import MultiMapping as MultiMapping
    from ._core.multi_partitions import MultiPartitions as MultiPartitions
    from ._core.partition_mappings import AllPartitions as AllPartitions
    from ._core.partition_mappings import IdentityMapping as IdentityMapping
    from ._core.partition_mappings import LastN as LastN
    from ._core.partition_mappings import MissingPartitionsError as MissingPartitionsError
    from ._core.partition_mappings import Offset as Offset
    from ._core.partition_mappings import PartitionMapping as PartitionMapping
    from ._core.partition_mappings import PartitionMappingError as PartitionMappingError
    from ._core.partition_mappings import StaticMapping as StaticMapping
    from ._core.partition_mappings import TimeWindowMapping as TimeWindowMapping
    from ._core.partitions import DailyPartitions as DailyPartitions
    from ._core.partitions import HourlyPartitions as HourlyPartitions
    from ._core.partitions import MonthlyPartitions as MonthlyPartitions
    from ._core.partitions import PartitionsDefinition as PartitionsDefinition
    from ._core.partitions import StaticPartitions as StaticPartitions
    from ._core.partitions import TimeWindowPartitions as TimeWindowPartitions
    from ._core.pipeline import Pipeline as Pipeline
    from ._core.ratelimit import RateLimiter as RateLimiter
    from ._core.records import MaterializationRecord as MaterializationRecord
    from ._core.records import RunRecord as RunRecord
    from ._core.records import RunStatus as RunStatus
    from ._core.records import Status as Status
    from ._core.result import MaterializeResult as MaterializeResult
    from ._core.retry import Retry as Retry
    from ._core.runtime import AssetState as AssetState
    from ._core.runtime import Runtime as Runtime
    from ._core.runtime import default_runtime as default_runtime
    from ._core.weekly_partitions import WeeklyPartitions as WeeklyPartitions

__version__ = "0.1.0"

__all__ = (
    "AllPartitions",
    "AssetDef",
    "AssetExecutionError",
    "AssetKind",
    "AssetState",
    "AssetTimeoutError",
    "BackfillResult",
    "CheckDef",
    "CheckFailedError",
    "CheckRecord",
    "CheckResult",
    "ComponentHealth",
    "ConfigurationError",
    "Context",
    "CycleError",
    "DailyPartitions",
    "DefinitionError",
    "DuplicateAssetError",
    "DynamicPartitions",
    "ExecutionError",
    "FlowstoneError",
    "HealthReport",
    "HealthStatus",
    "HourlyPartitions",
    "IdentityMapping",
    "InvalidAssetError",
    "InvalidCheckError",
    "LastN",
    "LoggingSink",
    "MaterializationRecord",
    "MaterializeResult",
    "MemoryEventSink",
    "MemoryGateStore",
    "MemoryIOManager",
    "MemoryStore",
    "MissingExtraError",
    "MissingInputError",
    "MissingPartitionsError",
    "MonthlyPartitions",
    "MultiMapping",
    "MultiPartitions",
    "Offset",
    "PartitionError",
    "PartitionMapping",
    "PartitionMappingError",
    "PartitionOutcome",
    "PartitionsDefinition",
    "Pipeline",
    "PluginNotFoundError",
    "RateLimiter",
    "Resources",
    "Retry",
    "RunFailedError",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "RuntimeStateError",
    "SelectionError",
    "SkipAsset",
    "StaticMapping",
    "StaticPartitions",
    "Status",
    "StorageError",
    "Suspended",
    "SystemClock",
    "TimeWindowMapping",
    "TimeWindowPartitions",
    "UnknownDependencyError",
    "ValueNotFoundError",
    "WeeklyPartitions",
    "asset",
    "backfill",
    "check",
    "current_context",
    "default_runtime",
    "exists",
    "invalidate",
    "load",
    "materialize",
    "materialize_sync",
    "status",
)

#: Where each public name is defined. Names are imported on first use (PEP 562), so
#: ``import flowstone`` stays cheap: defining assets loads the definition layer, and the
#: first run loads the execution layer (and asyncio, when it is the event loop).
_WHERE: "dict[str, str]" = {
    "backfill": "api",
    "exists": "api",
    "invalidate": "api",
    "load": "api",
    "materialize": "api",
    "materialize_sync": "api",
    "status": "api",
    "AssetDef": "assets",
    "AssetKind": "assets",
    "SkipAsset": "assets",
    "Suspended": "assets",
    "asset": "assets",
    "BackfillResult": "backfill",
    "CheckDef": "checks",
    "CheckFailedError": "checks",
    "CheckRecord": "checks",
    "CheckResult": "checks",
    "InvalidCheckError": "checks",
    "check": "checks",
    "SystemClock": "clock",
    "PartitionOutcome": "backfill",
    "Context": "context",
    "Resources": "context",
    "current_context": "context",
    "DynamicPartitions": "dynamic_partitions",
    "AssetExecutionError": "errors",
    "AssetTimeoutError": "errors",
    "ConfigurationError": "errors",
    "CycleError": "errors",
    "DefinitionError": "errors",
    "DuplicateAssetError": "errors",
    "ExecutionError": "errors",
    "FlowstoneError": "errors",
    "InvalidAssetError": "errors",
    "MissingExtraError": "errors",
    "MissingInputError": "errors",
    "PartitionError": "errors",
    "PluginNotFoundError": "errors",
    "RunFailedError": "errors",
    "RuntimeStateError": "errors",
    "SelectionError": "errors",
    "StorageError": "errors",
    "UnknownDependencyError": "errors",
    "ValueNotFoundError": "errors",
    "ComponentHealth": "health",
    "HealthReport": "health",
    "HealthStatus": "health",
    "LoggingSink": "memory",
    "MemoryEventSink": "memory",
    "MemoryGateStore": "memory",
    "MemoryIOManager": "memory",
    "MemoryStore": "memory",
    "DailyPartitions": "partitions",
    "HourlyPartitions": "partitions",
    "MonthlyPartitions": "partitions",
    "PartitionsDefinition": "partitions",
    "StaticPartitions": "partitions",
    "TimeWindowPartitions": "partitions",
    "MultiMapping": "multi_partitions",
    "MultiPartitions": "multi_partitions",
    "AllPartitions": "partition_mappings",
    "IdentityMapping": "partition_mappings",
    "LastN": "partition_mappings",
    "MissingPartitionsError": "partition_mappings",
    "Offset": "partition_mappings",
    "PartitionMapping": "partition_mappings",
    "PartitionMappingError": "partition_mappings",
    "StaticMapping": "partition_mappings",
    "TimeWindowMapping": "partition_mappings",
    "WeeklyPartitions": "weekly_partitions",
    "Pipeline": "pipeline",
    "RateLimiter": "ratelimit",
    "MaterializationRecord": "records",
    "RunRecord": "records",
    "RunStatus": "records",
    "Status": "records",
    "MaterializeResult": "result",
    "Retry": "retry",
    "AssetState": "runtime",
    "Runtime": "runtime",
    "default_runtime": "runtime",
}


def _show_public_path() -> None:
    """Name the public path in reprs and docs (``flowstone.Pipeline``, not
    ``flowstone._core.pipeline.Pipeline``) for every public name loaded so far."""
    for name, where in _WHERE.items():
        module = _sys.modules.get(f"{__name__}._core.{where}")
        obj = getattr(module, name, None) if module is not None else None
        if getattr(obj, "__module__", "").startswith("flowstone._core"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - builtins refuse
                pass


def __getattr__(name: str) -> _typing.Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f"{__name__}._core.{where}"), name)
    _show_public_path()
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(__all__))
