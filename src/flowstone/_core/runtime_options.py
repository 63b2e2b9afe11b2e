"""Checks of ``Runtime(...)`` arguments, so that a wrong one fails when it is given.

Each check raises :class:`~flowstone.ConfigurationError` naming the argument, rather than
letting a wrong value fail in the first run with an ``AttributeError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import ConfigurationError

__all__ = ["check_runtime_options"]

_STORE_METHODS = (
    "create_run",
    "finish_run",
    "get_run",
    "list_runs",
    "save_record",
    "get_records",
    "latest",
    "history",
    "invalidate",
)
_GATE_STORE_METHODS = ("create", "get", "latest", "close", "resolve", "list_open")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_methods(option: str, value: object, methods: tuple[str, ...], what: str) -> None:
    missing = [m for m in methods if not callable(getattr(value, m, None))]
    if missing:
        raise ConfigurationError(
            f"{option}= must be {what}; {_shown(value)} has no {', '.join(missing)}"
        )


def _check_named(option: str, value: object, *, strings_allowed: bool) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{option}= must be a mapping of names to objects, not {_shown(value)}"
        )
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{option}= keys must be non-empty str, not {_shown(name)}")
        if item is None or (isinstance(item, str) and not (strings_allowed and item)):
            raise ConfigurationError(
                f"{option}[{name!r}] must be an object or a 'module:attr' string, "
                f"not {_shown(item)}"
            )


def _check_sequence(option: str, value: object) -> None:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{option}= must be a list of objects, not {_shown(value)}")


def check_runtime_options(
    *,
    store: object,
    io_managers: object,
    default_io_manager: object,
    resources: object,
    event_sinks: object,
    coordinators: object,
    item_readers: object,
    gate_store: object,
    max_concurrent: object,
    plugins: object,
    loop_block_warning: object = None,
    clock: object = None,
) -> None:
    """Raise :class:`ConfigurationError` naming the first argument that cannot work."""
    if isinstance(store, str):
        hint = (
            "; for PostgreSQL pass store=PostgresStore(dsn) "
            "(from flowstone.ext.postgres import PostgresStore)"
            if store.startswith(("postgres://", "postgresql://"))
            else ""
        )
        raise ConfigurationError(f"store= takes a store object, not a string ({store!r}){hint}")
    if store is not None:
        _check_methods("store", store, _STORE_METHODS, "a MaterializationStore")
    if gate_store is not None:
        _check_methods("gate_store", gate_store, _GATE_STORE_METHODS, "a GateStore")
    if clock is not None:
        _check_methods("clock", clock, ("now", "sleep_until"), "a Clock")
    _check_named("io_managers", io_managers, strings_allowed=True)
    _check_named("coordinators", coordinators, strings_allowed=True)
    _check_named("item_readers", item_readers, strings_allowed=True)
    if resources is not None and not isinstance(resources, Mapping):
        raise ConfigurationError(f"resources= must be a mapping, not {_shown(resources)}")
    for name in resources or {}:
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"resources= keys must be identifiers, not {_shown(name)}")
    if default_io_manager is not None and (
        not isinstance(default_io_manager, str) or not default_io_manager
    ):
        raise ConfigurationError(
            f"default_io_manager= must be an IO manager's name, not {_shown(default_io_manager)}"
        )
    _check_sequence("event_sinks", event_sinks)
    sinks: Any = event_sinks if isinstance(event_sinks, Sequence) else ()
    for sink in sinks:
        if isinstance(sink, str) and sink:
            continue  # a name, resolved by the runtime's event sink registry
        if not callable(getattr(sink, "emit", None)):
            raise ConfigurationError(
                "event_sinks= must hold event sinks (objects with emit(event)) or their "
                f"registered names, not {_shown(sink)}"
            )
    _check_sequence("plugins", plugins)
    for plugin in plugins if isinstance(plugins, Sequence) else ():
        opens = hasattr(plugin, "__aenter__") and hasattr(plugin, "__aexit__")
        if not opens and not callable(getattr(plugin, "install", None)):
            raise ConfigurationError(
                "plugins= must hold plugins (objects with install(runtime)) or async context "
                f"managers the runtime opens and closes, not {_shown(plugin)}"
            )
    if max_concurrent is not None and (
        isinstance(max_concurrent, bool)
        or not isinstance(max_concurrent, int)
        or max_concurrent < 1
    ):
        raise ConfigurationError(f"max_concurrent must be at least 1, got {max_concurrent!r}")
    if loop_block_warning is not None and (
        isinstance(loop_block_warning, bool)
        or not isinstance(loop_block_warning, int | float)
        or not math.isfinite(loop_block_warning)
        or loop_block_warning <= 0
    ):
        raise ConfigurationError(
            "loop_block_warning= must be a positive number of seconds or None, "
            f"not {_shown(loop_block_warning)}"
        )
