"""pytest plugin and helpers for testing pipelines (registered as the ``flowstone`` plugin).

Fixtures:

- ``flowstone_runtime``: a fresh, opened in-memory :class:`flowstone.Runtime` per test,
  closed afterwards. It is the real runtime, not a fake. Its ``memory`` IO manager is in
  strict mode (:class:`flowstone.MemoryIOManager`): a value PostgreSQL would refuse, or
  give back different (a set, a dict with an int key, a lone surrogate, a cycle), fails
  the asset with :class:`flowstone.StorageError`, as it would in production. To keep
  arbitrary Python objects in one test, turn it off with
  ``flowstone_runtime.io_managers.get("memory").strict = False``; for a whole suite,
  define your own ``flowstone_runtime`` fixture in ``conftest.py``.
- ``flowstone_events``: a :class:`flowstone.MemoryEventSink` attached to that runtime.
- ``moto_server``: moto's real HTTP server on a loopback port for the test session (needs
  ``moto[server]``; skips without it), with fake AWS credentials in the environment while
  it runs. Give its ``endpoint_url`` to S3 and DynamoDB clients
  (``S3IOManager(bucket=..., endpoint_url=moto_server.endpoint_url)``);
  ``moto_server.create_bucket()`` makes a fresh bucket, ``moto_server.client("dynamodb")``
  a boto3 client for setting things up (its type: :class:`MotoServer`). moto is imported
  only when the fixture is used.

An ``async def`` test that uses ``flowstone_runtime`` needs no marker and no pytest config:
the plugin marks it for pytest-asyncio when that is installed (strict or auto mode) and
for anyio's plugin otherwise, and opens the runtime in the loop the test runs in (anyio's
for ``@pytest.mark.anyio`` tests).

``VirtualClock`` is a :class:`flowstone.protocols.Clock` that moves only when told:
``fs.Runtime(clock=clock)``, then ``await clock.advance(days=7)`` fires every deadline
that falls due (gate timeouts, say), in order, in no real time.

Helpers, usable with or without pytest; each takes the result, then the asset names::

    result = await flowstone_runtime.materialize(pipeline)
    assert_succeeded(result, "total", value=30)
    assert_skipped(result, "by_grid")
    assert_reused(result, "prices", "total")
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from ._core.clock import VirtualClock as VirtualClock
from ._core.memory import MemoryEventSink, MemoryIOManager
from ._core.records import Status
from ._core.runtime import Runtime
from ._testing_aws import MotoServer as MotoServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator

    from ._core.result import MaterializeResult

_F = TypeVar("_F", bound="Callable[..., Any]")
_fixture: Any
try:  # pytest-asyncio in strict mode only runs async fixtures declared with its decorator
    import pytest_asyncio

    _fixture = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without it, tests run under anyio's plugin
    _fixture = pytest.fixture


def _asyncio_fixture(fn: _F) -> _F:
    return cast("_F", _fixture(fn))


_RUNTIME_FIXTURE = "flowstone_runtime"
_ASYNC_MARKERS = ("asyncio", "anyio")


__all__ = [
    "MotoServer",
    "VirtualClock",
    "assert_failed",
    "assert_reused",
    "assert_skipped",
    "assert_succeeded",
    "flowstone_events",
    "flowstone_runtime",
    "moto_server",
]

_MISSING: Any = object()


def _outcome_of(result: MaterializeResult, asset: str) -> Any:
    outcome = result.outcomes.get(asset)
    if outcome is None:
        ran = ", ".join(result.outcomes) or "nothing"
        raise AssertionError(f"asset {asset!r} was not part of run {result.run_id!r} (ran: {ran})")
    return outcome


def assert_succeeded(result: MaterializeResult, *assets: str, value: Any = _MISSING) -> None:
    """Assert that each asset succeeded (and, with ``value=``, that the single asset's value equals it)."""
    if value is not _MISSING and len(assets) != 1:
        raise TypeError("value= checks exactly one asset")
    for asset in assets or result.selection:
        outcome = _outcome_of(result, asset)
        if outcome.status is not Status.SUCCEEDED:
            detail = outcome.reason or repr(outcome.error)
            raise AssertionError(f"asset {asset!r} {outcome.status.value}: {detail}")
        if value is not _MISSING:
            actual = result[asset]
            if actual != value:
                raise AssertionError(f"asset {asset!r} is {actual!r}, expected {value!r}")


def assert_failed(
    result: MaterializeResult, asset: str, error: type[BaseException] | None = None
) -> BaseException:
    """Assert that ``asset`` failed (with ``error`` as the original cause) and return the error."""
    outcome = _outcome_of(result, asset)
    if outcome.status is not Status.FAILED:
        raise AssertionError(f"asset {asset!r} {outcome.status.value}, expected it to fail")
    failure: BaseException = outcome.error
    if error is not None:
        cause = failure.__cause__ if failure.__cause__ is not None else failure
        if not isinstance(cause, error) and not isinstance(failure, error):
            raise AssertionError(
                f"asset {asset!r} failed with {cause!r}, expected {error.__name__}"
            )
    return failure


def assert_skipped(result: MaterializeResult, *assets: str) -> None:
    """Assert that each asset was skipped."""
    for asset in assets:
        outcome = _outcome_of(result, asset)
        if outcome.status is not Status.SKIPPED:
            raise AssertionError(f"asset {asset!r} {outcome.status.value}, expected it skipped")


def assert_reused(
    result: MaterializeResult, *assets: str | Iterable[str], reused: bool = True
) -> None:
    """Assert that each asset's current stored value was reused (or, ``reused=False``, computed).

    The names come after the result, as for the other helpers:
    ``assert_reused(result, "up", "down")``; with none, every asset of the run's selection.
    The older form with one list, ``assert_reused(result, ["up", "down"])``, still works and
    warns with a ``DeprecationWarning``.
    """
    names: list[str] = []
    for asset in assets:
        if isinstance(asset, str):
            names.append(asset)
            continue
        warnings.warn(
            "assert_reused(result, [names]) is deprecated: pass the names as arguments, "
            "assert_reused(result, 'a', 'b')",
            DeprecationWarning,
            stacklevel=2,
        )
        names.extend(asset)
    for name in names if assets else result.selection:
        record = _outcome_of(result, name).record
        if record is None or record.reused is not reused:
            what = "reused" if reused else "computed"
            raise AssertionError(f"asset {name!r} was not {what} in run {result.run_id!r}")


@pytest.fixture
def flowstone_events() -> MemoryEventSink:
    """An event sink that keeps every event of the ``flowstone_runtime`` fixture."""
    return MemoryEventSink()


@asynccontextmanager
async def _opened_runtime(flowstone_events: MemoryEventSink) -> AsyncIterator[Runtime]:
    strict = MemoryIOManager(strict=True)
    async with Runtime(event_sinks=[flowstone_events], io_managers={"memory": strict}) as runtime:
        yield runtime


@_asyncio_fixture
async def _flowstone_runtime_asyncio(flowstone_events: MemoryEventSink) -> AsyncIterator[Runtime]:
    """``flowstone_runtime`` for a test that pytest-asyncio runs, opened in its event loop."""
    async with _opened_runtime(flowstone_events) as runtime:
        yield runtime


@pytest.fixture
async def _flowstone_runtime_anyio(flowstone_events: MemoryEventSink) -> AsyncIterator[Runtime]:
    """``flowstone_runtime`` for a test that anyio's plugin runs, opened in its event loop."""
    async with _opened_runtime(flowstone_events) as runtime:
        yield runtime


@pytest.fixture
def flowstone_runtime(request: pytest.FixtureRequest) -> Runtime:
    """A fresh, opened in-memory runtime (its ``memory`` IO manager in strict mode); closed
    after the test.

    It is opened in the event loop the test runs in: anyio's for a test that anyio's plugin
    runs (``@pytest.mark.anyio``), pytest-asyncio's otherwise.
    """
    under_anyio = "anyio_backend" in request.fixturenames
    name = "_flowstone_runtime_anyio" if under_anyio else "_flowstone_runtime_asyncio"
    runtime: Runtime = request.getfixturevalue(name)
    return runtime


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's HTTP server (``ThreadedMotoServer``) on 127.0.0.1 and a free port, for the
    session; fake credentials are in the environment while it runs. Skips the test when
    ``moto[server]`` is not installed.
    """
    pytest.importorskip("moto.server")
    from ._testing_aws import run_moto_server

    with run_moto_server() as server:
        yield server


def _is_async_test(function: Any) -> bool:
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", function)
    return inspect.iscoroutinefunction(inner)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, Any]:
    """Mark an unmarked ``async def`` test that uses ``flowstone_runtime`` to run.

    It gets pytest-asyncio's ``asyncio`` marker when that plugin is active (so strict mode
    needs no marker), anyio's ``anyio`` marker otherwise. A test that already carries
    either marker, or asks for ``anyio_backend``, is left as it is.
    """
    collected = yield
    items = collected if isinstance(collected, list) else [collected]
    config = collector.config
    marker = "asyncio" if config.pluginmanager.has_plugin("asyncio") else "anyio"
    for item in items:
        if (
            isinstance(item, pytest.Function)
            and _is_async_test(item.obj)
            and _RUNTIME_FIXTURE in item.fixturenames
            and "anyio_backend" not in item.fixturenames
            and not any(item.get_closest_marker(m) for m in _ASYNC_MARKERS)
        ):
            item.add_marker(marker)
    return collected
