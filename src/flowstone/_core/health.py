"""``runtime.health()``: whether each part of a runtime works, and how fast it answered.

Every part is checked at once, each within a time limit: the store (by its own check when
it has one, else by listing one run), the gate store (listing open gates), each IO manager
the runtime has resolved (asking whether a value exists), and everything registered with
the runtime that implements :class:`~flowstone.protocols.HealthCheck` (a store, a plugin,
an event sink, a coordinator, an item reader), which reports components of its own. A
check that raises or runs out of time reports its component ``down``.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio

from .protocols import HealthCheck, IOContext, IOManager

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from .runtime import Runtime

__all__ = [
    "DEFAULT_HEALTH_TIMEOUT",
    "ComponentHealth",
    "HealthReport",
    "HealthStatus",
    "check_component",
    "opening_failed",
    "runtime_health",
]

#: Seconds each check may take before its component counts as down.
DEFAULT_HEALTH_TIMEOUT = 5.0

#: The asset name a health check asks IO managers about (no value is ever stored under it).
PROBE_ASSET = "__flowstone_health__"


class HealthStatus(enum.StrEnum):
    """A component's state: ``up``, ``degraded`` (works, with a problem) or ``down``."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


_RANK = {HealthStatus.UP: 0, HealthStatus.DEGRADED: 1, HealthStatus.DOWN: 2}


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's health.

    :param name: which component (``"store"``, ``"io_manager:s3"``, ``"postgres:workers"``)
    :param status: its :class:`HealthStatus`
    :param latency: seconds its check took
    :param detail: what was found, or why it is down
    """

    name: str
    status: HealthStatus
    latency: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The component as JSON-able data."""
        return {
            "name": self.name,
            "status": self.status.value,
            "latency": round(self.latency, 6),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every component's health; ``status`` is the worst of them."""

    components: tuple[ComponentHealth, ...]

    @property
    def status(self) -> HealthStatus:
        """The worst status of any component (``up`` when there are none)."""
        worst = HealthStatus.UP
        for component in self.components:
            if _RANK[component.status] > _RANK[worst]:
                worst = component.status
        return worst

    @property
    def ok(self) -> bool:
        """Whether no component is down."""
        return self.status is not HealthStatus.DOWN

    def __getitem__(self, name: str) -> ComponentHealth:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(component.name == name for component in self.components)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "status": self.status.value,
            "components": [c.to_dict() for c in self.components],
        }


async def check_component(
    name: str,
    check: Callable[[], Awaitable[str | None]],
    *,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,  # noqa: ASYNC109 - the check's own limit
) -> ComponentHealth:
    """Run ``check`` and time it: ``up`` with the detail it returns, ``down`` with the error
    it raises (or when it takes longer than ``timeout`` seconds). For plugins' checks."""
    (found,) = await _guarded(name, functools.partial(_up, name, check), timeout)
    return found


async def _up(
    name: str, check: Callable[[], Awaitable[str | None]], started: float
) -> list[ComponentHealth]:
    detail = await check()
    return [ComponentHealth(name, HealthStatus.UP, perf_counter() - started, detail or "")]


async def _contributed(part: HealthCheck, started: float) -> list[ComponentHealth]:
    return list(await part.check_health())


async def _guarded(
    name: str, check: Callable[[float], Awaitable[list[ComponentHealth]]], limit: float
) -> list[ComponentHealth]:
    """What ``check(started)`` reports, or ``name`` down when it raises or takes longer
    than ``limit`` seconds."""
    started = perf_counter()
    try:
        with anyio.fail_after(limit):
            return await check(started)
    except TimeoutError:
        detail = f"no answer in {limit:g}s"
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
    return [ComponentHealth(name, HealthStatus.DOWN, perf_counter() - started, detail)]


def _parts(runtime: Runtime) -> Iterable[tuple[str, object]]:
    """What is registered with ``runtime`` beside its stores and IO managers, by name."""
    for plugin in runtime._plugins:
        yield f"plugin:{type(plugin).__name__}", plugin
    for sink in runtime.event_sinks:
        yield f"event_sink:{type(sink).__name__}", sink
    for kind, coordinator in runtime.coordinators.resolved():
        yield f"coordinator:{kind}", coordinator
    for name, reader in runtime.item_readers.resolved():
        yield f"item_reader:{name}", reader


async def runtime_health(runtime: Runtime, limit: float = DEFAULT_HEALTH_TIMEOUT) -> HealthReport:
    """Check every part of ``runtime`` at once, each within ``limit`` seconds (see the
    module)."""
    store, gates = runtime.store, runtime.gate_store

    async def runs() -> str:
        found = await store.list_runs(limit=1)
        return f"{type(store).__name__}: reachable ({len(found)} run(s) listed)"

    async def open_gates() -> str:
        return f"{type(gates).__name__}: {len(await gates.list_open())} open gate(s)"

    # Each part once, by its own check when it has one, else by the generic one (if any).
    parts: list[tuple[str, object, Callable[[], Awaitable[str]] | None]] = [
        ("store", store, runs),
        ("gate_store", gates, open_gates),
    ]
    parts += [(name, part, None) for name, part in _parts(runtime)]
    runtime.io_managers.get(runtime.default_io_manager)  # the default one is always checked
    parts += [
        (f"io_manager:{name}", manager, functools.partial(_probe, manager))
        for name, manager in runtime.io_managers.resolved()
    ]
    jobs: list[tuple[str, Callable[[float], Awaitable[list[ComponentHealth]]]]] = []
    seen: set[int] = set()
    for name, part, generic in parts:
        if id(part) in seen:
            continue
        if isinstance(part, HealthCheck):
            jobs.append((name, functools.partial(_contributed, part)))
        elif generic is not None:
            jobs.append((name, functools.partial(_up, name, generic)))
        else:
            continue
        seen.add(id(part))
    results: list[list[ComponentHealth]] = [[] for _ in jobs]

    async def run(index: int) -> None:
        name, check = jobs[index]
        results[index] = await _guarded(name, check, limit)

    async with anyio.create_task_group() as tg:
        for index in range(len(jobs)):
            tg.start_soon(run, index)
    return HealthReport(tuple(c for found in results for c in found))


async def _probe(manager: IOManager) -> str:
    """An IO manager answers whether a value exists (one that never does)."""
    await manager.exists(IOContext(PROBE_ASSET))
    return f"{type(manager).__name__}: reachable"


def opening_failed(error: Exception) -> HealthReport:
    """The report of a runtime that could not open: one ``runtime`` component, down."""
    detail = f"cannot open: {type(error).__name__}: {error}"
    return HealthReport((ComponentHealth("runtime", HealthStatus.DOWN, 0.0, detail),))
