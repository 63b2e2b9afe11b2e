"""Resuming a run from a runtime that did not start it, as a fresh process does."""

from __future__ import annotations

import pytest

import flowstone as fs

calls: list[str] = []
broken = {"flag": True}


@fs.asset
async def fetched() -> int:
    calls.append("fetched")
    return 20


@fs.asset
async def summed(fetched: int) -> int:
    calls.append("summed")
    if broken["flag"]:
        raise RuntimeError("the network went away")
    return fetched + 1


PIPELINE = fs.Pipeline([fetched, summed], name="nightly")


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    broken["flag"] = True


def fresh_runtime(
    store: fs.MemoryStore, io: fs.MemoryIOManager, pipelines: list[fs.Pipeline] | None = None
) -> fs.Runtime:
    """A runtime over the same durable state, knowing nothing of earlier runs."""
    return fs.Runtime(
        store=store,
        io_managers={"shared": io},
        default_io_manager="shared",
        pipelines=pipelines or [],
    )


async def crashed_run(store: fs.MemoryStore, io: fs.MemoryIOManager) -> str:
    async with fresh_runtime(store, io) as rt:
        result = await rt.materialize(PIPELINE, run_id="crashed", raise_on_error=False)
    assert result.failed == ("summed",)
    broken["flag"] = False
    calls.clear()
    return result.run_id


async def test_resume_by_run_id_alone_with_the_pipeline_given_to_the_runtime() -> None:
    store, io = fs.MemoryStore(), fs.MemoryIOManager()
    run_id = await crashed_run(store, io)
    async with fresh_runtime(store, io, pipelines=[PIPELINE]) as rt:
        result = await rt.resume(run_id)
    assert result.ok and result["summed"] == 21
    assert calls == ["summed"]
    assert result.records["fetched"].reused


async def test_resume_by_run_id_alone_with_the_pipeline_registered() -> None:
    store, io = fs.MemoryStore(), fs.MemoryIOManager()
    run_id = await crashed_run(store, io)
    async with fresh_runtime(store, io) as rt:
        assert rt.register(PIPELINE) is PIPELINE
        assert rt.pipeline("nightly") is PIPELINE
        result = await rt.resume(run_id)
    assert result.ok and calls == ["summed"]


async def test_resume_of_an_unknown_pipeline_says_how_to_pass_it() -> None:
    store, io = fs.MemoryStore(), fs.MemoryIOManager()
    run_id = await crashed_run(store, io)
    async with fresh_runtime(store, io) as rt:
        with pytest.raises(fs.ConfigurationError, match="nightly") as caught:
            await rt.resume(run_id)
        assert "resume(run_id, pipeline)" in str(caught.value)
        assert "register" in str(caught.value)
        assert calls == []
        assert (await rt.resume(run_id, PIPELINE)).ok


def test_only_named_pipelines_register_once() -> None:
    rt = fs.Runtime()
    with pytest.raises(fs.ConfigurationError, match="named pipeline"):
        rt.register(fs.Pipeline([fetched, summed]))
    rt.register(PIPELINE)
    rt.register(PIPELINE)  # the same pipeline again is harmless
    with pytest.raises(fs.ConfigurationError, match="already registered as 'nightly'"):
        rt.register(fs.Pipeline([fetched], name="nightly"))
    with pytest.raises(fs.ConfigurationError, match="named pipeline"):
        fs.Runtime(pipelines=[fs.Pipeline([fetched])])
