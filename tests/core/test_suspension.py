"""Suspension: an asset that waits, the run that goes on around it, and its resumption."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.events import AssetWaiting, RunFinished
from flowstone.protocols import attach_kind


def attach_kind_of(spec: fs.AssetKind) -> Any:
    return lambda fn: attach_kind(fn, spec)


calls: list[str] = []
opened: dict[str, bool] = {"door": False}
SINCE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    opened["door"] = False


@fs.asset
async def order() -> dict[str, int]:
    calls.append("order")
    return {"id": 7}


@fs.asset
async def door(order: dict[str, int]) -> str:
    calls.append("door")
    if not opened["door"]:
        raise fs.Suspended("the door is shut", since=SINCE, metadata={"door": "front"})
    return f"open for {order['id']}"


@fs.asset
async def inside(door: str) -> str:
    calls.append("inside")
    return door.upper()


@fs.asset(optional_deps=["door"])
async def hallway(door: str | None = None) -> str:
    calls.append("hallway")
    return door or "none"


@fs.asset
async def garden(order: dict[str, int]) -> int:
    calls.append("garden")
    return order["id"] * 2


PIPELINE = fs.Pipeline([order, door, inside, hallway, garden], name="house")


async def test_a_suspended_asset_waits_with_its_dependents_and_the_rest_runs() -> None:
    sink = fs.MemoryEventSink()
    async with fs.Runtime(event_sinks=[sink]) as rt:
        result = await rt.materialize(PIPELINE, run_id="r1")
        assert result.status is fs.RunStatus.WAITING
        assert not result.ok
        assert set(result.waiting) == {"door", "inside", "hallway"}
        assert result["garden"] == 14
        assert "inside" not in calls and "hallway" not in calls
        records = {r.asset: r for r in await rt.store.get_records("r1")}
        assert records["door"].status is fs.Status.WAITING
        assert records["door"].error == "the door is shut"
        assert records["door"].metadata["door"] == "front"
        assert records["inside"].status is fs.Status.WAITING
        assert (await rt.store.get_run("r1")).status is fs.RunStatus.WAITING  # type: ignore[union-attr]
    waiting = [e for e in sink.events if isinstance(e, AssetWaiting)]
    assert [e.asset for e in waiting][0] == "door"
    assert waiting[0].since == SINCE
    finished = [e for e in sink.events if isinstance(e, RunFinished)]
    assert finished[-1].status == "waiting" and "door" in finished[-1].waiting


async def test_a_waiting_run_does_not_raise_and_its_repr_names_the_waits() -> None:
    result = await fs.materialize(PIPELINE, run_id="r-repr")
    text = repr(result)
    assert "status=waiting" in text
    assert f"door (the door is shut) since {SINCE.isoformat()}" in text
    assert result.waiting_since("door") == SINCE.isoformat()
    assert result.waiting_since("garden") is None
    html = result._repr_html_()
    assert "waiting" in html and SINCE.isoformat() in html
    with pytest.raises(KeyError, match="waiting"):
        result["door"]


@pytest.mark.parametrize("how", ["materialize", "resume"])
async def test_resuming_reuses_what_is_done_and_finishes(how: str) -> None:
    async with fs.Runtime(pipelines=[PIPELINE]) as rt:
        first = await rt.materialize(PIPELINE, run_id="r2")
        assert first.status is fs.RunStatus.WAITING
        calls.clear()
        opened["door"] = True
        if how == "resume":
            second = await rt.resume("r2")
        else:
            second = await rt.materialize(PIPELINE, run_id="r2")
        assert second.ok and second.resumed
        assert second["inside"] == "OPEN FOR 7"
        assert second["hallway"] == "open for 7"
        assert sorted(calls) == ["door", "hallway", "inside"]  # order and garden reused
        assert (await rt.store.get_run("r2")).status is fs.RunStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_a_failure_beside_a_wait_fails_the_run_and_keeps_the_wait() -> None:
    @fs.asset
    async def broken(order: dict[str, int]) -> int:
        raise ValueError("no")

    pipeline = fs.Pipeline([order, door, broken])
    result = await fs.materialize(pipeline, raise_on_error=False)
    assert result.status is fs.RunStatus.FAILED
    assert result.waiting == ("door",)
    assert result.failed == ("broken",)


async def test_suspension_is_not_retried_and_is_no_failure() -> None:
    attempts: list[int] = []

    @fs.asset(retry=fs.Retry(attempts=3, backoff=0))
    async def patient(ctx: fs.Context) -> int:
        attempts.append(ctx.attempt)
        raise fs.Suspended("later")

    result = await fs.materialize([patient])
    assert attempts == [1]
    assert result.waiting == ("patient",)
    assert result.errors == {}


def test_suspended_keeps_what_it_was_given() -> None:
    until = datetime(2026, 2, 1, tzinfo=UTC)
    waiting = fs.Suspended("gate open", since=SINCE, until=until, metadata={"k": 1})
    assert (waiting.reason, waiting.since, waiting.until) == ("gate open", SINCE, until)
    assert dict(waiting.metadata) == {"k": 1}
    assert str(waiting) == "gate open"


async def test_a_coordinator_that_applies_its_own_timeout_is_not_timed_by_the_run() -> None:
    class Patient(fs.AssetKind):
        kind = "patient"
        applies_own_timeout = True

    class Waits:
        async def execute(self, invocation: Any) -> Any:
            await anyio.sleep(0.05)  # longer than the asset's timeout: it does not count
            return await invocation.call()

    @fs.asset(timeout=0.001)
    @attach_kind_of(Patient())
    async def slow() -> int:
        return 1

    async with fs.Runtime(coordinators={"patient": Waits()}) as rt:
        assert (await rt.materialize([slow]))["slow"] == 1


async def test_a_backfill_counts_a_suspended_partition_as_waiting() -> None:
    days = fs.StaticPartitions(["a", "b"])

    @fs.asset(partitions=days)
    async def daily(ctx: fs.Context) -> str:
        if ctx.partition == "b":
            raise fs.Suspended("waits for b's data")
        return ctx.partition or ""

    result = await fs.backfill([daily], partitions=days)
    assert result.outcomes["a"].status == "succeeded"
    assert result.outcomes["b"].status == "waiting"
    assert (result.succeeded, result.waiting, result.failed) == (1, 1, 0)
    assert not result.ok and "1 waiting" in repr(result)
