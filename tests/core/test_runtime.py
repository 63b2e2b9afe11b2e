"""The runtime: lifecycle, registries, plugins, sinks, default runtime."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.events import Event
from flowstone.protocols import Invocation, IOContext, Registry


@fs.asset
async def one() -> int:
    return 1


async def test_default_runtime_is_one_per_loop() -> None:
    from flowstone._core.runtime import default_runtime

    assert default_runtime() is default_runtime()
    rt = default_runtime()

    def other_loop() -> fs.Runtime:
        async def get() -> fs.Runtime:
            return default_runtime()

        return anyio.run(get)

    assert await anyio.to_thread.run_sync(other_loop) is not rt


async def test_runtime_opens_lazily_and_closes_once() -> None:
    rt = fs.Runtime()
    await rt.materialize([one])
    await rt.aclose()
    await rt.aclose()
    assert rt.closed
    with pytest.raises(fs.RuntimeStateError):
        await rt.open()


async def test_plugin_install_and_context_managers_open_in_order() -> None:
    log: list[str] = []

    class Manager:
        def __init__(self) -> None:
            self.values: dict[Any, Any] = {}

        async def store(self, context: IOContext, value: Any) -> None:
            self.values[context.asset, context.partition] = value

        async def load(self, context: IOContext) -> Any:
            return self.values[context.asset, context.partition]

        async def exists(self, context: IOContext) -> bool:
            return (context.asset, context.partition) in self.values

        async def delete(self, context: IOContext) -> None:
            self.values.pop((context.asset, context.partition), None)

    class Plugin:
        def __init__(self, name: str) -> None:
            self.name = name
            self.manager = Manager()

        def install(self, runtime: fs.Runtime) -> None:
            runtime.io_managers.register(self.name, self.manager)
            runtime.default_io_manager = self.name
            log.append(f"install {self.name}")

        async def __aenter__(self) -> Plugin:
            log.append(f"open {self.name}")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append(f"close {self.name}")

    first, second = Plugin("first"), Plugin("second")
    async with fs.Runtime(plugins=[first, second]) as rt:
        result = await rt.materialize([one])
        assert result.records["one"].io_manager == "second"
        assert second.manager.values == {("one", None): 1}
    assert log == [
        "install first",
        "install second",
        "open first",
        "open second",
        "close second",
        "close first",
    ]


async def test_unknown_io_manager_lists_available() -> None:
    @fs.asset(io_manager="nowhere")
    async def lost() -> int:
        return 1

    with pytest.raises(
        fs.PluginNotFoundError, match="no IO manager registered as 'nowhere'"
    ) as info:
        await fs.materialize([lost])
    assert "memory" in info.value.available


async def test_io_manager_store_failure_is_a_storage_error() -> None:
    class Broken(fs.MemoryIOManager):
        async def store(self, context: IOContext, value: Any) -> None:
            raise OSError("disk full")

    async with fs.Runtime(io_managers={"broken": Broken()}, default_io_manager="broken") as rt:
        result = await rt.materialize([one], raise_on_error=False)
    error = result.errors["one"]
    assert isinstance(error.__cause__, fs.StorageError)
    assert "disk full" in str(error)


async def test_a_failing_sink_never_fails_a_run(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def emit(self, event: Event) -> None:
            raise RuntimeError("sink down")

    sink = fs.MemoryEventSink()
    async with fs.Runtime(event_sinks=[Broken(), sink]) as rt:
        result = await rt.materialize([one])
    assert result.ok and sink.events
    assert "sink down" in caplog.text


async def test_custom_kind_goes_to_its_coordinator() -> None:
    from flowstone.protocols import AssetKind, attach_kind

    class Twice(AssetKind):
        kind = "twice"

    class TwiceCoordinator:
        async def execute(self, invocation: Invocation) -> Any:
            first = await invocation.call()
            second = await invocation.call()
            return first + second

    async def base() -> int:
        return 21

    twice = fs.asset(attach_kind(base, Twice()))
    async with fs.Runtime(coordinators={"twice": TwiceCoordinator()}) as rt:
        result = await rt.materialize([twice])
    assert result["base"] == 42

    with pytest.raises(fs.PluginNotFoundError, match="no coordinator registered as 'twice'"):
        await fs.materialize([twice])


def test_registry_resolves_lazily_and_caches() -> None:
    registry: Registry[Any] = Registry("thing", {"counter": "collections:Counter"})
    first = registry.get("counter")
    assert first is registry.get("counter")
    registry.register("other", "collections:OrderedDict")
    assert set(registry.names()) == {"counter", "other"}
    with pytest.raises(fs.ConfigurationError, match="no module"):
        Registry("thing", {"bad": "no_such_module:thing"}).get("bad")
    with pytest.raises(fs.ConfigurationError, match="has no 'Nope'"):
        Registry("thing", {"bad": "collections:Nope"}).get("bad")


def test_invalid_runtime_settings() -> None:
    with pytest.raises(fs.ConfigurationError, match="max_concurrent"):
        fs.Runtime(max_concurrent=0)
