"""The flowstone exception tree.

Every error flowstone raises on purpose derives from :class:`FlowstoneError`::

    FlowstoneError
    ├── DefinitionError                 bad asset or pipeline definitions (at definition time)
    │   ├── CycleError                  the dependency graph has a cycle (``.cycle``)
    │   ├── UnknownDependencyError      an asset depends on a name nobody defines
    │   ├── DuplicateAssetError         two assets share one name
    │   └── InvalidAssetError           a decorator was used wrongly
    ├── SelectionError (LookupError)    a selected asset does not exist (did-you-mean)
    ├── PartitionError (ValueError)     a partition key is invalid or missing for an asset
    ├── ConfigurationError              a setting is wrong or missing
    │   ├── MissingExtraError (ImportError)    an optional dependency is not installed
    │   └── PluginNotFoundError (LookupError)  a registry has no such name
    ├── RuntimeStateError (RuntimeError)       a runtime used after close, sync API in a loop
    ├── StorageError                    an IO manager or store could not do its job
    │   └── ValueNotFoundError (KeyError)      no stored value for (asset, partition)
    └── ExecutionError                  something failed while a run executed
        ├── AssetExecutionError         an asset failed (``__cause__`` holds the original error)
        │   └── AssetTimeoutError       an attempt ran past its timeout
        ├── MissingInputError           an input has no value and may not be skipped
        └── RunFailedError              a run finished with failed assets

Cancellation is never wrapped: ``anyio.get_cancelled_exc_class()`` always propagates as is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "AssetExecutionError",
    "AssetTimeoutError",
    "ConfigurationError",
    "CycleError",
    "DefinitionError",
    "DuplicateAssetError",
    "ExecutionError",
    "FlowstoneError",
    "InvalidAssetError",
    "MissingExtraError",
    "MissingInputError",
    "PartitionError",
    "PluginNotFoundError",
    "RunFailedError",
    "RuntimeStateError",
    "SelectionError",
    "StorageError",
    "UnknownDependencyError",
    "ValueNotFoundError",
]


class FlowstoneError(Exception):
    """Base class of every error flowstone raises on purpose."""


# -- definitions -------------------------------------------------------------------------


class DefinitionError(FlowstoneError):
    """An asset or pipeline definition is invalid; raised when it is defined."""


class CycleError(DefinitionError):
    """The dependency graph contains a cycle.

    :param cycle: the assets on the cycle, in dependency order, first repeated at the end
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


class UnknownDependencyError(DefinitionError):
    """An asset depends on an asset that is not part of the pipeline."""

    def __init__(self, asset: str, dependency: str, suggestion: str | None = None) -> None:
        self.asset = asset
        self.dependency = dependency
        self.suggestion = suggestion
        message = f"asset {asset!r} depends on unknown asset {dependency!r}"
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        super().__init__(message)


class DuplicateAssetError(DefinitionError):
    """Two different assets were given the same name."""

    def __init__(self, asset: str) -> None:
        self.asset = asset
        super().__init__(f"two different assets are named {asset!r}; asset names must be unique")


class InvalidAssetError(DefinitionError):
    """An asset decorator or option was used in a way that cannot work."""

    def __init__(self, asset: str, reason: str) -> None:
        self.asset = asset
        self.reason = reason
        super().__init__(f"asset {asset!r}: {reason}")


# -- selection, partitions ---------------------------------------------------------------


class SelectionError(FlowstoneError, LookupError):
    """A selected asset name is not in the pipeline."""

    def __init__(self, name: str, available: Sequence[str], suggestion: str | None = None) -> None:
        self.name = name
        self.available = tuple(available)
        self.suggestion = suggestion
        message = f"no asset named {name!r} in the pipeline"
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        elif self.available:
            shown = ", ".join(sorted(self.available)[:10])
            more = "" if len(self.available) <= 10 else f", … ({len(self.available)} in all)"
            message += f" (assets: {shown}{more})"
        super().__init__(message)

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError
        return str(self.args[0])


class PartitionError(FlowstoneError, ValueError):
    """A partition key is not valid for an asset, or one is missing where it is needed."""

    def __init__(self, asset: str | None, key: str | None, reason: str) -> None:
        self.asset = asset
        self.key = key
        self.reason = reason
        where = f"asset {asset!r}" if asset else "partitions"
        shown = f"partition {key!r}" if key is not None else "no partition"
        super().__init__(f"{where}: {shown}: {reason}")


# -- configuration -----------------------------------------------------------------------


class ConfigurationError(FlowstoneError):
    """A setting is missing or wrong."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional dependency is needed but not installed.

    :param feature: what needs it, e.g. ``"flowstone.ext.postgres"``
    :param package: the missing import, e.g. ``"asyncpg"``
    :param extra: the extra that installs it, e.g. ``"postgres"``
    """

    def __init__(self, feature: str, package: str, extra: str) -> None:
        self.feature = feature
        self.package = package
        self.extra = extra
        super().__init__(f"{feature} needs {package}: pip install 'flowstone[{extra}]'")


class PluginNotFoundError(ConfigurationError, LookupError):
    """A registry has nothing registered under a name."""

    def __init__(self, kind: str, name: str, available: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = tuple(sorted(available))
        names = ", ".join(self.available) or "none"
        super().__init__(f"no {kind} registered as {name!r} (available: {names})")

    def __str__(self) -> str:
        return str(self.args[0])


class RuntimeStateError(FlowstoneError, RuntimeError):
    """An API was used in a state where it cannot work (closed runtime, sync call in a loop)."""


# -- storage -----------------------------------------------------------------------------


class StorageError(FlowstoneError):
    """An IO manager or store failed to store, load or delete something."""


class ValueNotFoundError(StorageError, KeyError):
    """No value is stored for an asset (and partition)."""

    def __init__(self, asset: str, partition: str | None) -> None:
        self.asset = asset
        self.partition = partition
        where = f" partition {partition!r}" if partition is not None else ""
        super().__init__(f"no stored value for asset {asset!r}{where}")

    def __str__(self) -> str:
        return str(self.args[0])


# -- execution ---------------------------------------------------------------------------


class ExecutionError(FlowstoneError):
    """Something failed while a run was executing."""


class AssetExecutionError(ExecutionError):
    """An asset's function raised (after its retries); the original error is ``__cause__``.

    :param asset: the asset's name
    :param partition: the partition key, or ``None``
    :param run_id: the run's id
    :param attempt: the attempt (1-based) that failed last
    """

    def __init__(
        self,
        asset: str,
        partition: str | None,
        run_id: str,
        attempt: int,
        error: BaseException | str,
    ) -> None:
        self.asset = asset
        self.partition = partition
        self.run_id = run_id
        self.attempt = attempt
        self.error = error
        where = f" partition {partition!r}" if partition is not None else ""
        detail = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        super().__init__(
            f"asset {asset!r}{where} failed in run {run_id!r} on attempt {attempt}: {detail}"
        )


class AssetTimeoutError(AssetExecutionError, TimeoutError):
    """An attempt of an asset ran longer than its ``timeout``."""

    def __init__(
        self, asset: str, partition: str | None, run_id: str, attempt: int, timeout: float
    ) -> None:
        self.timeout = timeout
        super().__init__(asset, partition, run_id, attempt, f"timed out after {timeout:g} s")


class MissingInputError(ExecutionError):
    """An asset's input has no value (not stored, not computed, not optional)."""

    def __init__(self, asset: str, dependency: str, partition: str | None, reason: str) -> None:
        self.asset = asset
        self.dependency = dependency
        self.partition = partition
        where = f" partition {partition!r}" if partition is not None else ""
        super().__init__(f"asset {asset!r}{where}: input {dependency!r} is missing: {reason}")


class RunFailedError(ExecutionError):
    """A run finished with failures that were not raised individually."""

    def __init__(self, run_id: str, failed: Sequence[str]) -> None:
        self.run_id = run_id
        self.failed = tuple(failed)
        super().__init__(f"run {run_id!r} failed: {', '.join(self.failed)}")
