"""The store's background work: one task group per event loop, gone when idle, waited for
on close, and a failing piece of work ends neither the others nor its caller."""

from __future__ import annotations

import asyncio
import logging

import anyio
import pytest

pytest.importorskip("asyncpg")

from flowstone.ext.postgres._background import BackgroundWork


def _owner_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("flowstone: ")]


async def test_work_runs_in_one_group_that_ends_once_idle() -> None:
    work = BackgroundWork("test work")
    release = anyio.Event()
    done: list[int] = []

    async def piece(n: int) -> None:
        await release.wait()
        done.append(n)

    for n in range(3):
        work.start_soon(lambda n=n: piece(n))  # type: ignore[misc]
    assert work.running == 3
    await anyio.lowlevel.checkpoint()
    assert len(_owner_tasks()) == 1  # one owner task for all of them
    release.set()
    await work.aclose()
    assert sorted(done) == [0, 1, 2]
    assert work.running == 0
    assert _owner_tasks() == []  # an idle store holds no task


async def test_work_started_while_the_group_closes_still_runs() -> None:
    work = BackgroundWork("test work")
    done: list[str] = []

    async def first() -> None:
        done.append("first")

    async def second() -> None:
        done.append("second")

    work.start_soon(first)
    for _ in range(50):  # start more at every point of the owner's life
        await anyio.lowlevel.checkpoint()
        work.start_soon(second)
    await work.aclose()
    assert done.count("first") == 1
    assert done.count("second") == 50
    assert work.running == 0


async def test_a_failure_is_logged_and_ends_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    work = BackgroundWork("writing records")
    done: list[str] = []

    async def broken() -> None:
        raise RuntimeError("disk on fire")

    async def fine() -> None:
        await anyio.lowlevel.checkpoint()
        done.append("fine")

    with caplog.at_level(logging.WARNING, logger="flowstone.postgres"):
        work.start_soon(broken)
        work.start_soon(fine)
        await work.aclose()
    assert done == ["fine"]
    assert "writing records failed in the background" in caplog.text
    assert "disk on fire" in caplog.text


def test_work_of_an_event_loop_that_ended_is_dropped_not_waited_for() -> None:
    work = BackgroundWork("test work")
    ran: list[int] = []

    async def first_loop() -> None:
        work.start_soon(anyio.sleep_forever)  # cancelled when this loop ends
        for _ in range(3):  # the piece of work starts, and waits
            await anyio.lowlevel.checkpoint()

    async def second_loop() -> None:
        assert work.running == 0  # nothing of the first loop counts here

        async def piece() -> None:
            ran.append(1)

        work.start_soon(piece)
        await work.aclose()

    asyncio.run(first_loop())
    asyncio.run(second_loop())
    assert ran == [1]
