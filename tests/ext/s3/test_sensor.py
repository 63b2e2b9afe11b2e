"""``S3KeySensor`` against moto's HTTP server, polled by a scheduler in virtual time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import flowstone as fs
from flowstone.ext.s3 import S3KeySensor
from flowstone.ext.schedule import Scheduler, Sensor, TickStatus
from flowstone.testing import MotoServer, VirtualClock

pytestmark = pytest.mark.s3

imported: list[tuple[str | None, str]] = []


@fs.asset(partitions=fs.StaticPartitions(["a.csv", "b.csv", "c.csv", "old.csv"]))
async def imported_file(ctx: fs.Context) -> str:
    imported.append((ctx.partition, ctx.run_id))
    return ctx.run_id


def put(server: MotoServer, bucket: str, key: str, body: bytes) -> None:
    server.client().put_object(Bucket=bucket, Key=key, Body=body)


async def test_each_new_object_fires_one_run_and_an_overwrite_fires_again(
    moto_server: MotoServer, bucket: str
) -> None:
    put(moto_server, bucket, "inbox/old.csv", b"there before")
    put(moto_server, bucket, "elsewhere/x.csv", b"not watched")
    watcher = S3KeySensor(
        bucket,
        "inbox/",
        pipeline=[imported_file],
        partition=lambda key: key.removeprefix("inbox/"),
        interval=30,
        endpoint_url=moto_server.endpoint_url,
        name="inbox",
    )
    assert isinstance(watcher, Sensor)
    clock = VirtualClock(datetime(2025, 1, 1, tzinfo=UTC))
    async with fs.Runtime(clock=clock) as rt, watcher:
        async with Scheduler(rt, [watcher]) as scheduler:
            await scheduler.wait_idle()  # the first poll: what is there fires nothing
            put(moto_server, bucket, "inbox/a.csv", b"1")
            put(moto_server, bucket, "inbox/b.csv", b"2")
            await clock.advance(seconds=30)
            await scheduler.wait_idle()
            await clock.advance(seconds=30)  # nothing new
            await scheduler.wait_idle()
            put(moto_server, bucket, "inbox/a.csv", b"changed")
            put(moto_server, bucket, "inbox/c.csv", b"3")
            await clock.advance(seconds=30)
            await scheduler.wait_idle()
            history = await scheduler.store.history("inbox")
        run: Any = await rt.store.get_run(history[0].run_id)
    assert sorted(p for p, _ in imported) == ["a.csv", "a.csv", "b.csv", "c.csv"]
    assert len({r for _, r in imported}) == 4
    assert {r.status for r in history} == {TickStatus.SUCCEEDED}
    assert run.tags["s3.bucket"] == bucket and run.tags["s3.key"].startswith("inbox/")


async def test_existing_objects_fire_when_asked(moto_server: MotoServer, bucket: str) -> None:
    imported.clear()
    put(moto_server, bucket, "old.csv", b"there before")
    watcher = S3KeySensor(
        bucket,
        pipeline=[imported_file],
        partition=lambda key: key,
        existing=True,
        endpoint_url=moto_server.endpoint_url,
    )
    clock = VirtualClock(datetime(2025, 1, 1, tzinfo=UTC))
    async with fs.Runtime(clock=clock) as rt, watcher:
        async with Scheduler(rt, [watcher]) as scheduler:
            await scheduler.wait_idle()
    assert [p for p, _ in imported] == ["old.csv"]
    assert watcher.name == f"s3-{bucket}"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(fs.ConfigurationError, match="bucket="):
        S3KeySensor("")
    with pytest.raises(fs.ConfigurationError, match="interval="):
        S3KeySensor("b", interval=0)
