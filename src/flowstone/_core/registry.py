"""Typed registries that resolve implementations by name, lazily.

A registry maps names to objects, to ``"package.module:attr"`` strings imported on first
use, or to factories. Third-party plugins add names through an entry-point group
(``flowstone.io_managers``, ``flowstone.coordinators``, ``flowstone.item_readers``,
``flowstone.event_sinks``).
An unknown name raises :class:`~flowstone.PluginNotFoundError` listing what exists.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigurationError, PluginNotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = [
    "BUILTIN_COORDINATORS",
    "BUILTIN_EVENT_SINKS",
    "BUILTIN_IO_MANAGERS",
    "Registry",
    "import_string",
]

T = TypeVar("T")

#: Built-in IO managers by name; plugins are imported only when named.
BUILTIN_IO_MANAGERS: Mapping[str, str] = {
    "memory": "flowstone._core.memory:MemoryIOManager",
    "postgres": "flowstone.ext.postgres:PostgresIOManager",
    "parquet": "flowstone.ext.parquet:ParquetIOManager",
    "s3": "flowstone.ext.s3:S3IOManager",
}

#: Built-in coordinators by asset kind.
BUILTIN_COORDINATORS: Mapping[str, str] = {
    "scatter": "flowstone.ext.scatter:InProcessScatterCoordinator",
    "parallel": "flowstone.ext.parallel:InProcessParallelCoordinator",
    "router": "flowstone.ext.routing:InProcessRoutingCoordinator",
    "routed": "flowstone.ext.routing:RoutedCoordinator",
    "gate": "flowstone.ext.gates:GateCoordinator",
}

#: Built-in event sinks by name (``Runtime(event_sinks=["logging"])``); plugins add theirs
#: through the ``flowstone.event_sinks`` entry-point group.
BUILTIN_EVENT_SINKS: Mapping[str, str] = {
    "logging": "flowstone._core.memory:LoggingSink",
}


def import_string(path: str) -> Any:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``) and return the attribute.

    :raises ConfigurationError: the module or attribute does not exist; a missing optional
        dependency surfaces as the plugin's own ``MissingExtraError``
    """
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigurationError(f"cannot import {path!r}: no module {exc.name!r}") from exc
        raise
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"cannot import {path!r}: {module_name} has no {attr!r}") from None


class Registry(Generic[T]):
    """Names to implementations of one extension point, resolved on first use and cached.

    :param kind: what the registry holds, for error messages (``"IO manager"``)
    :param builtins: names mapped to objects or to import strings
    :param entry_point_group: the entry-point group third-party plugins register in
    """

    def __init__(
        self,
        kind: str,
        builtins: Mapping[str, T | str] | None = None,
        *,
        entry_point_group: str | None = None,
    ) -> None:
        self.kind = kind
        self._entries: dict[str, T | str | _Factory[T]] = dict(builtins or {})
        self._resolved: dict[str, T] = {}
        self._group = entry_point_group
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, implementation: T | str) -> None:
        """Register an object (or an import string) under ``name``, replacing any other."""
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"a {self.kind} needs a non-empty name, got {name!r}")
        self._entries[name] = implementation
        self._resolved.pop(name, None)

    def register_factory(self, name: str, factory: Callable[[], T]) -> None:
        """Register a factory called once, on first use of ``name``."""
        self._entries[name] = _Factory(factory)
        self._resolved.pop(name, None)

    def get(self, name: str) -> T:
        """The implementation registered as ``name``.

        :raises PluginNotFoundError: nothing is registered under ``name``
        """
        try:
            return self._resolved[name]
        except KeyError:
            pass
        if name not in self._entries:
            self._load_entry_points()
        try:
            entry = self._entries[name]
        except KeyError:
            raise PluginNotFoundError(self.kind, name, self.names()) from None
        value: Any
        if isinstance(entry, _Factory):
            value = entry.factory()
        elif isinstance(entry, str):
            value = import_string(entry)
            if isinstance(value, type):
                value = value()
        else:
            value = entry
        self._resolved[name] = value
        return value  # type: ignore[no-any-return]  # entries are T once resolved

    def resolved(self) -> Iterator[tuple[str, T]]:
        """The implementations resolved so far (for opening and closing them)."""
        return iter(list(self._resolved.items()))

    def names(self) -> list[str]:
        """Every registered name, built-in or from entry points."""
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        self._load_entry_points()
        return name in self._entries

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (resolved objects are not shared)."""
        clone: Registry[T] = Registry(self.kind, entry_point_group=None)
        clone._entries = dict(self._entries)
        clone._group = self._group
        clone._entry_points_loaded = self._entry_points_loaded
        return clone

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        assert self._group is not None
        from importlib.metadata import entry_points  # slow to import; needed only here

        for ep in entry_points(group=self._group):
            self._entries.setdefault(ep.name, ep.value)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


class _Factory(Generic[T]):
    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
