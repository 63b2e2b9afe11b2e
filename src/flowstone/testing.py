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

Helpers, usable with or without pytest::

    result = await flowstone_runtime.materialize(pipeline)
    assert_succeeded(result, "total", value=30)
    assert_skipped(result, "by_grid")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from ._core.memory import MemoryEventSink, MemoryIOManager
from ._core.records import Status
from ._core.runtime import Runtime

if TYPE_CHECKING:
    from ._core.result import MaterializeResult

_F = TypeVar("_F", bound=Callable[..., Any])
_fixture: Any
try:  # pytest-asyncio in strict mode only runs async fixtures declared with its decorator
    import pytest_asyncio

    _fixture = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - anyio's pytest plugin handles plain fixtures
    _fixture = pytest.fixture


def _async_fixture(fn: _F) -> _F:
    return cast("_F", _fixture(fn))


__all__ = [
    "assert_failed",
    "assert_reused",
    "assert_skipped",
    "assert_succeeded",
    "flowstone_events",
    "flowstone_runtime",
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


def assert_reused(result: MaterializeResult, assets: Iterable[str], *, reused: bool = True) -> None:
    """Assert that each asset's current stored value was reused (or, ``reused=False``, computed)."""
    for asset in assets:
        record = _outcome_of(result, asset).record
        if record is None or record.reused is not reused:
            what = "reused" if reused else "computed"
            raise AssertionError(f"asset {asset!r} was not {what} in run {result.run_id!r}")


@pytest.fixture
def flowstone_events() -> MemoryEventSink:
    """An event sink that keeps every event of the ``flowstone_runtime`` fixture."""
    return MemoryEventSink()


@_async_fixture
async def flowstone_runtime(flowstone_events: MemoryEventSink) -> AsyncIterator[Runtime]:
    """A fresh, opened in-memory runtime (its ``memory`` IO manager in strict mode); closed
    after the test."""
    strict = MemoryIOManager(strict=True)
    async with Runtime(event_sinks=[flowstone_events], io_managers={"memory": strict}) as runtime:
        yield runtime
