"""The tolerated-failure arithmetic and the in-memory barrier of the in-process coordinator."""

from __future__ import annotations

import pytest

import flowstone as fs
from flowstone.ext.scatter import (
    DuplicateScatterKeyError,
    InProcessScatterCoordinator,
    ScatterSummary,
    allowed_failures,
    threshold_exceeded,
)
from flowstone.protocols import ScatterCoordinator, ScatterItemResult


@pytest.mark.parametrize(
    ("failed", "total", "tolerated", "exceeded"),
    [
        (0, 10, 0, False),
        (1, 10, 0, True),
        (3, 10, 3, False),
        (4, 10, 3, True),
        (3, 300, 0.01, False),
        (4, 300, 0.01, True),
        (29, 100, 0.29, False),  # 0.29 * 100 is 28.999... in binary floats
        (30, 100, 0.29, True),
        (7, 100, 0.07, False),
        (1, 99, 0.01, True),  # 0.99 allowed: no failure
        (5, None, 0.5, False),  # unknown total: a fraction waits
        (1, None, 0.0, True),  # ...except 0.0, which nothing satisfies
        (10, 10, 1.0, False),
    ],
)
def test_threshold_is_exact(
    failed: int, total: int | None, tolerated: float, exceeded: bool
) -> None:
    assert threshold_exceeded(failed, total, tolerated) is exceeded


def test_allowed_failures() -> None:
    assert allowed_failures(5, None) == 5
    assert allowed_failures(0.1, None) is None
    assert allowed_failures(0.1, 95) == 9


def test_summary_as_dict_marks_truncation() -> None:
    summary = ScatterSummary(total=300, succeeded=100, failed=200, failures=(("1", "E: x"),))
    data = summary.as_dict()
    assert data["failures"] == [{"key": "1", "error": "E: x"}]
    assert data["failures_truncated"] is True


async def test_barrier_counts_each_key_once() -> None:
    coordinator: ScatterCoordinator = InProcessScatterCoordinator()
    state = await coordinator.create_barrier(
        "b1", run_id="r", asset="a", partition=None, tolerated_failure=1, total=4
    )
    assert (state.total, state.finished, state.done) == (4, 0, False)
    again = await coordinator.create_barrier(
        "b1", run_id="r", asset="a", partition=None, tolerated_failure=1
    )
    assert again is state
    await coordinator.add_keys("b1", [(0, "k0"), (1, "k1"), (2, "k2"), (3, "k3")])
    await coordinator.add_keys("b1", [(1, "k1")])  # the same pair again: harmless
    with pytest.raises(DuplicateScatterKeyError, match="'k1'"):
        await coordinator.add_keys("b1", [(9, "k1")])
    ok = fs.Status.SUCCEEDED
    state = await coordinator.record(
        "b1",
        [
            ScatterItemResult("k2", 2, ok, value="v2"),
            ScatterItemResult("k0", 0, fs.Status.FAILED, error="E: 0", attempts=3),
        ],
    )
    assert (state.succeeded, state.failed, state.retried, state.exceeded) == (1, 1, 1, False)
    state = await coordinator.record(
        "b1",
        [
            ScatterItemResult("k2", 2, fs.Status.FAILED, error="late"),  # already terminal
            ScatterItemResult("k1", 1, fs.Status.FAILED, error="E: 1"),
        ],
    )
    assert (state.succeeded, state.failed, state.exceeded) == (1, 2, True)
    await coordinator.record("b1", [ScatterItemResult("k3", 3, ok, value="v3")])
    results = [r async for r in coordinator.gather("b1")]
    assert [r.key for r in results] == ["k0", "k1", "k2", "k3"]
    assert results[2].value == "v2"
    await coordinator.cancel("b1", "stopped")
    assert (await InProcessScatterCoordinator.state(coordinator, "b1")).cancelled  # type: ignore[arg-type]


async def test_barrier_fraction_waits_for_the_total() -> None:
    coordinator = InProcessScatterCoordinator()
    await coordinator.create_barrier(
        "b2", run_id="r", asset="a", partition="p", tolerated_failure=0.25
    )
    results = [ScatterItemResult(f"k{i}", i, fs.Status.FAILED, error="E") for i in range(3)]
    state = await coordinator.record("b2", results)
    assert not state.exceeded  # the total is unknown
    assert (await coordinator.set_total("b2", 12)).exceeded is False  # 3 of 12 = 25 %
    state = await coordinator.record("b2", [ScatterItemResult("k9", 9, fs.Status.FAILED)])
    assert state.exceeded
    with pytest.raises(KeyError, match="no scatter barrier"):
        await coordinator.record("nope", [])
    await coordinator.drop("b2")
