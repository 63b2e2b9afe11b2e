"""Plugins and named event sinks: the ``Plugin`` protocol, ``event_sinks=["name"]`` and the
``flowstone.event_sinks`` entry-point group (through a real distribution on ``sys.path``)."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowstone as fs
from flowstone.protocols import EventSink, Plugin


@fs.asset
def one() -> int:
    return 1


SINK_MODULE = '''
class RecordingSink:
    """Keeps the names of the events it receives; records being entered and exited."""

    instances = []

    def __init__(self):
        self.events = []
        self.log = []
        RecordingSink.instances.append(self)

    def emit(self, event):
        self.events.append(type(event).__name__)

    async def __aenter__(self):
        self.log.append("enter")
        return self

    async def __aexit__(self, *exc):
        self.log.append("exit")


class NotASink:
    pass
'''

ENTRY_POINTS = """[flowstone.event_sinks]
recording = flowstone_test_sinks:RecordingSink
broken = flowstone_test_sinks:NotASink
"""


@pytest.fixture
def installed_sinks(tmp_path: Path) -> Iterator[Any]:
    """A distribution registering two event sinks by entry point, importable for the test."""
    (tmp_path / "flowstone_test_sinks.py").write_text(SINK_MODULE)
    info = tmp_path / "flowstone_test_sinks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: flowstone-test-sinks\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("flowstone_test_sinks").RecordingSink
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("flowstone_test_sinks", None)
        importlib.invalidate_caches()


async def test_a_sink_named_by_entry_point_receives_events_and_opens_with_the_runtime(
    installed_sinks: Any,
) -> None:
    async with fs.Runtime(event_sinks=["recording"]) as rt:
        (sink,) = rt.event_sinks
        assert isinstance(sink, installed_sinks)
        assert sink.log == ["enter"]
        await rt.materialize([one])
    assert sink.log == ["enter", "exit"]
    assert sink.events[0] == "RunStarted" and sink.events[-1] == "RunFinished"
    assert "AssetSucceeded" in sink.events


async def test_add_event_sink_takes_a_name(installed_sinks: Any) -> None:
    rt = fs.Runtime()
    rt.add_event_sink("recording")
    async with rt:
        await rt.materialize([one])
    (sink,) = rt.event_sinks
    assert sink.log == ["enter", "exit"]
    assert "AssetSucceeded" in sink.events


def test_an_entry_point_that_is_not_a_sink_fails_when_named(installed_sinks: Any) -> None:
    with pytest.raises(fs.ConfigurationError, match="event sink 'broken' resolved to .*emit"):
        fs.Runtime(event_sinks=["broken"])


def test_an_unknown_sink_name_fails_at_construction_listing_the_names() -> None:
    with pytest.raises(fs.PluginNotFoundError) as caught:
        fs.Runtime(event_sinks=["no-such-sink"])
    assert "no-such-sink" in str(caught.value)
    assert "logging" in str(caught.value)


async def test_the_built_in_logging_sink_by_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="flowstone")
    async with fs.Runtime(event_sinks=["logging"]) as rt:
        (sink,) = rt.event_sinks
        assert isinstance(sink, fs.LoggingSink)
        await rt.materialize([one])
    assert any("one" in r.getMessage() and "succeeded" in r.getMessage() for r in caplog.records)


def test_an_object_without_install_is_refused_as_a_plugin() -> None:
    with pytest.raises(fs.ConfigurationError, match=r"plugins= must hold plugins .*install"):
        fs.Runtime(plugins=[object()])


async def test_an_async_context_manager_in_plugins_opens_and_closes_with_the_runtime() -> None:
    log: list[str] = []

    class Client:
        async def __aenter__(self) -> Client:
            log.append("open")
            return self

        async def __aexit__(self, *exc: object) -> None:
            log.append("close")

    async with fs.Runtime(plugins=[Client()]):
        assert log == ["open"]
    assert log == ["open", "close"]


def test_plugins_and_sinks_satisfy_their_protocols() -> None:
    class Installs:
        def install(self, runtime: fs.Runtime) -> None:
            runtime.add_event_sink("logging")

    assert isinstance(Installs(), Plugin)
    assert not isinstance(object(), Plugin)
    assert isinstance(fs.LoggingSink(), EventSink)
    rt = fs.Runtime(plugins=[Installs()])
    assert [type(s) for s in rt.event_sinks] == [fs.LoggingSink]


def test_explicit_arguments_win_over_what_a_plugin_installs() -> None:
    class DefaultsToNowhere:
        def install(self, runtime: fs.Runtime) -> None:
            runtime.default_io_manager = "nowhere"

    rt = fs.Runtime(plugins=[DefaultsToNowhere()], default_io_manager="memory")
    assert rt.default_io_manager == "memory"
