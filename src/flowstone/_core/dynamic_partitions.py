"""Dynamic partitions: partition keys added and removed at run time.

``fs.DynamicPartitions("customers")`` is a partitioning whose keys live in the runtime's
store, under the name ``"customers"``: ``await runtime.partitions.add("customers",
["acme"])`` adds one (a sensor that finds a new customer does just that),
``remove`` removes one (its stored values stay), ``keys`` lists them in the order added.

A store keeps them when it implements :class:`DynamicPartitionStore` (``PostgresStore``
does, durably); otherwise the runtime keeps them in memory. A definition holds the keys
as of the last time a runtime read them: every ``materialize``, ``backfill`` and
``status`` reads them first, so a key added a moment ago is a partition of the next run.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import PartitionError
from .partitions import KeyedPartitions

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .pipeline import Pipeline
    from .runtime import Runtime

__all__ = [
    "DynamicPartitionStore",
    "DynamicPartitions",
    "MemoryDynamicPartitionStore",
    "RuntimePartitions",
    "refresh_dynamic_partitions",
]


@runtime_checkable
class DynamicPartitionStore(Protocol):
    """Keeps the keys of dynamic partitions, by partitions name.

    Contract: ``add_partitions`` and ``remove_partitions`` are idempotent per key, durable
    when they return, and safe under concurrent use; keys are listed in the order they
    were first added.
    """

    async def add_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Add keys to ``name``; return those that were not there yet, in order."""
        ...

    async def remove_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Remove keys from ``name``; return those that were there."""
        ...

    async def dynamic_partition_keys(self, name: str) -> list[str]:
        """The keys of ``name``, in the order they were added."""
        ...


class MemoryDynamicPartitionStore:
    """Dynamic partition keys in a dict: the runtime's own when its store keeps none."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, None]] = {}

    async def add_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Add keys to ``name``; return those that were new."""
        known = self._keys.setdefault(name, {})
        added = [k for k in dict.fromkeys(keys) if k not in known]
        known.update(dict.fromkeys(added))
        return added

    async def remove_partitions(self, name: str, keys: Sequence[str]) -> list[str]:
        """Remove keys from ``name``; return those that were there."""
        known = self._keys.get(name, {})
        removed = [k for k in dict.fromkeys(keys) if k in known]
        for key in removed:
            del known[key]
        return removed

    async def dynamic_partition_keys(self, name: str) -> list[str]:
        """The keys of ``name``, in the order added."""
        return list(self._keys.get(name, {}))


def _checked_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise PartitionError(None, None, f"dynamic partitions need a non-empty name, not {name!r}")
    return name


def _checked_keys(keys: Iterable[str] | str) -> list[str]:
    given = [keys] if isinstance(keys, str) else list(keys)
    for key in given:
        if not isinstance(key, str) or not key:
            raise PartitionError(
                None, None, f"a partition key must be a non-empty str, not {key!r}"
            )
    return given


class DynamicPartitions(KeyedPartitions):
    """Partitions whose keys are added and removed at run time (see the module).

    :param name: the name the keys are stored under (two definitions with one name share
        their keys)
    :raises PartitionError: ``name`` is not a non-empty str
    """

    __slots__ = ("_name",)
    _suggestion = ", or did you mean {!r}?"

    def __init__(self, name: str) -> None:
        self._name = _checked_name(name)
        self._keys: tuple[str, ...] = ()
        self._index: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        """The name the keys are stored under."""
        return self._name

    def keys(self) -> tuple[str, ...]:
        """The keys as last read from a runtime, in the order they were added."""
        return self._keys

    def _unknown(self, key: str) -> str:
        return (
            f"not one of the {len(self._keys)} keys of dynamic partitions {self._name!r}; "
            f"add it with `await runtime.partitions.add({self._name!r}, [{key!r}])`"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DynamicPartitions):
            return NotImplemented
        return self._name == other._name

    def __hash__(self) -> int:
        return hash((DynamicPartitions, self._name))

    def __repr__(self) -> str:
        return f"DynamicPartitions({self._name!r})"

    def _set_keys(self, keys: Sequence[str]) -> None:
        self._keys = tuple(keys)
        self._index = frozenset(self._keys)


#: The dynamic partitionings of each pipeline seen (see refresh_dynamic_partitions).
_DYNAMIC: weakref.WeakKeyDictionary[Pipeline, list[DynamicPartitions]] = weakref.WeakKeyDictionary()


def _dynamic_of(definition: object, found: list[DynamicPartitions]) -> None:
    if isinstance(definition, DynamicPartitions):
        found.append(definition)
    dimensions = getattr(definition, "dimensions", None)
    if dimensions is not None and hasattr(dimensions, "values"):
        for each in dimensions.values():
            _dynamic_of(each, found)


def store_of(runtime: Runtime) -> DynamicPartitionStore:
    """The store of the runtime's dynamic partition keys."""
    store: Any = runtime.store
    if isinstance(store, DynamicPartitionStore):
        return store
    own = runtime._dynamic_partitions
    if own is None:
        own = runtime._dynamic_partitions = MemoryDynamicPartitionStore()
    return own


async def refresh_dynamic_partitions(runtime: Runtime, pipeline: Pipeline) -> None:
    """Read the keys of every dynamic partitioning of ``pipeline`` from the runtime."""
    found = _DYNAMIC.get(pipeline)
    if found is None:  # a pipeline never changes: look once
        found = []
        for asset_def in pipeline:
            _dynamic_of(asset_def.partitions, found)
        _DYNAMIC[pipeline] = found
    if not found:
        return
    store = store_of(runtime)
    for definition in found:
        definition._set_keys(await store.dynamic_partition_keys(definition.name))


class RuntimePartitions:
    """``runtime.partitions``: the dynamic partition keys a runtime keeps.

    :param runtime: the runtime whose store (or memory) keeps the keys
    """

    __slots__ = ("_runtime",)

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def add(self, name: str, keys: Iterable[str] | str) -> list[str]:
        """Add partition keys to the dynamic partitions ``name``.

        :return: the keys that were new, in order
        :raises PartitionError: a key is not a non-empty str
        """
        return await store_of(self._runtime).add_partitions(
            _checked_name(name), _checked_keys(keys)
        )

    async def remove(self, name: str, keys: Iterable[str] | str) -> list[str]:
        """Remove partition keys (their stored values and records stay).

        :return: the keys that were there
        """
        return await store_of(self._runtime).remove_partitions(
            _checked_name(name), _checked_keys(keys)
        )

    async def keys(self, name: str) -> list[str]:
        """The keys of the dynamic partitions ``name``, in the order added."""
        return await store_of(self._runtime).dynamic_partition_keys(_checked_name(name))
