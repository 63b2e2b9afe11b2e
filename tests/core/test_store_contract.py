"""The MaterializationStore and IOManager contracts, run against every backend.

Each test takes the ``store`` (or ``io``) fixture, parametrized as ``memory`` and
``postgres`` (and, for IO managers, ``s3``); the postgres variant uses the PostgreSQL
fixtures (one fresh schema per test) and skips when no server is reachable; the s3 variant
uses a fresh bucket on the moto server of ``flowstone.testing``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowstone as fs
from flowstone.protocols import IOContext, IOManager, MaterializationStore, PartitionLister

BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

IO_BACKENDS = [
    *BACKENDS,
    pytest.param("s3", id="s3", marks=pytest.mark.s3),
]

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> MaterializationStore:
    """A materialization store of each backend, empty."""
    if request.param == "memory":
        return fs.MemoryStore()
    result: MaterializationStore = request.getfixturevalue("pg_store")
    return result


@pytest.fixture
async def s3_io(moto_server: Any) -> AsyncIterator[IOManager]:
    """An open ``S3IOManager`` on a fresh bucket of the moto server; closed afterwards."""
    pytest.importorskip("aioboto3")
    from flowstone.ext.s3 import S3IOManager

    bucket = moto_server.create_bucket()
    async with S3IOManager(bucket, "contract", endpoint_url=moto_server.endpoint_url) as io:
        yield io


@pytest.fixture(params=IO_BACKENDS)
def io(request: pytest.FixtureRequest) -> IOManager:
    """An IO manager of each backend, empty."""
    if request.param == "memory":
        return fs.MemoryIOManager()
    if request.param == "s3":
        s3: IOManager = request.getfixturevalue("s3_io")
        return s3
    result: IOManager = request.getfixturevalue("pg_store").io_manager
    return result


def run(run_id: str = "r1", *, started: datetime = T0, **changes: Any) -> fs.RunRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "pipeline": "pipe",
        "selection": ("a", "b"),
        "partition": None,
        "status": fs.RunStatus.RUNNING,
        "started_at": started,
    }
    fields.update(changes)
    return fs.RunRecord(**fields)


def record(
    asset: str = "a",
    run_id: str = "r1",
    status: fs.Status = fs.Status.SUCCEEDED,
    *,
    partition: str | None = None,
    started: datetime | None = T0,
    **changes: Any,
) -> fs.MaterializationRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "asset": asset,
        "partition": partition,
        "status": status,
        "attempts": 1,
        "started_at": started,
        "ended_at": None if started is None else started + timedelta(seconds=1),
        "data_version": f"{asset}-{run_id}",
    }
    fields.update(changes)
    return fs.MaterializationRecord(**fields)


# -- runs ----------------------------------------------------------------------------


async def test_create_run_is_idempotent_by_id(store: MaterializationStore) -> None:
    first = run(tags={"team": "data"}, partition="2025-01-02")
    stored, created = await store.create_run(first)
    assert created and stored == first
    again, created_again = await store.create_run(run(selection=("other",)))
    assert not created_again
    assert again == first
    assert await store.get_run("r1") == first


async def test_unknown_run_is_none_and_finishing_it_is_harmless(
    store: MaterializationStore,
) -> None:
    assert await store.get_run("nope") is None
    await store.finish_run("nope", fs.RunStatus.FAILED, T0)
    assert await store.get_run("nope") is None


async def test_finish_run_sets_status_and_end(store: MaterializationStore) -> None:
    await store.create_run(run())
    ended = T0 + timedelta(minutes=5)
    await store.finish_run("r1", fs.RunStatus.SUCCEEDED, ended)
    stored = await store.get_run("r1")
    assert stored is not None
    assert stored.status is fs.RunStatus.SUCCEEDED
    assert stored.ended_at == ended
    assert stored.selection == ("a", "b")


async def test_list_runs_newest_first_with_limit(store: MaterializationStore) -> None:
    for i in (2, 0, 3, 1):
        await store.create_run(run(f"r{i}", started=T0 + timedelta(seconds=i)))
    runs = await store.list_runs()
    assert [r.run_id for r in runs] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["r3", "r2"]


# -- records ------------------------------------------------------------------------


async def test_save_record_upserts_by_run_asset_partition(store: MaterializationStore) -> None:
    await store.save_record(record("z", status=fs.Status.RUNNING))
    await store.save_record(record("b", status=fs.Status.RUNNING))
    await store.save_record(record("z", status=fs.Status.SUCCEEDED, attempts=2))
    await store.save_record(record("z", status=fs.Status.FAILED, partition="p1"))
    await store.save_record(record("a", status=fs.Status.SUCCEEDED))
    records = await store.get_records("r1")
    assert [(r.asset, r.partition, r.status) for r in records] == [
        ("z", None, fs.Status.SUCCEEDED),
        ("b", None, fs.Status.RUNNING),
        ("z", "p1", fs.Status.FAILED),
        ("a", None, fs.Status.SUCCEEDED),
    ]
    assert records[0].attempts == 2
    assert await store.get_records("other") == []


async def test_record_fields_round_trip(store: MaterializationStore) -> None:
    original = record(
        "a",
        status=fs.Status.FAILED,
        partition="2025-01-02",
        error="ValueError: bad",
        error_type="ValueError",
        metadata={"rows": 3, "nested": {"list": [1, 2.5, None, "x"], "ok": True}},
        code_version="c1",
        input_versions={"up": "v1", "other": "v2"},
        io_manager="memory",
        reused=True,
    )
    await store.save_record(original)
    (stored,) = await store.get_records("r1")
    assert stored == original
    assert stored.duration == 1.0


async def test_latest_is_newest_succeeded(store: MaterializationStore) -> None:
    assert await store.latest("a", None) is None
    await store.save_record(record("a", "r1"))
    await store.save_record(record("a", "r2", fs.Status.FAILED))
    latest = await store.latest("a", None)
    assert latest is not None and latest.run_id == "r1"
    await store.save_record(record("a", "r3"))
    latest = await store.latest("a", None)
    assert latest is not None and latest.run_id == "r3"
    assert latest == record("a", "r3")


async def test_latest_keeps_partitions_apart(store: MaterializationStore) -> None:
    await store.save_record(record("a", "r1", partition="p1"))
    await store.save_record(record("a", "r2"))
    p1 = await store.latest("a", "p1")
    unpartitioned = await store.latest("a", None)
    assert p1 is not None and p1.run_id == "r1"
    assert unpartitioned is not None and unpartitioned.run_id == "r2"
    assert await store.latest("a", "p2") is None
    assert await store.latest("a", "") is None


async def test_invalidate_forgets_current_until_next_success(store: MaterializationStore) -> None:
    await store.save_record(record("a", "r1"))
    await store.save_record(record("a", "r1", partition="p"))
    await store.invalidate("a", None)
    assert await store.latest("a", None) is None
    assert await store.latest("a", "p") is not None
    await store.invalidate("missing", None)
    await store.save_record(record("a", "r2"))
    latest = await store.latest("a", None)
    assert latest is not None and latest.run_id == "r2"


async def test_history_newest_first_by_start(store: MaterializationStore) -> None:
    await store.save_record(record("a", "r1", started=T0))
    await store.save_record(record("a", "r3", started=T0 + timedelta(hours=2)))
    await store.save_record(record("a", "r2", fs.Status.FAILED, started=T0 + timedelta(hours=1)))
    await store.save_record(record("a", "r4", partition="p", started=T0 + timedelta(hours=3)))
    await store.save_record(record("b", "r1"))
    assert [r.run_id for r in await store.history("a", "p")] == ["r4"]
    assert [r.run_id for r in await store.history("a")] == ["r4", "r3", "r2", "r1"]
    assert [r.run_id for r in await store.history("a", limit=2)] == ["r4", "r3"]
    assert await store.history("nothing") == []


async def test_history_puts_records_without_start_last(store: MaterializationStore) -> None:
    await store.save_record(record("a", "r1", started=None))
    await store.save_record(record("a", "r2", started=T0))
    assert [r.run_id for r in await store.history("a")] == ["r2", "r1"]


async def test_concurrent_saves_all_land(store: MaterializationStore) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(40):
            tg.start_soon(store.save_record, record(f"asset{i}", status=fs.Status.RUNNING))
            tg.start_soon(store.save_record, record(f"asset{i}", "r2"))
    assert len(await store.get_records("r1")) == 40
    for i in range(40):
        latest = await store.latest(f"asset{i}", None)
        assert latest is not None and latest.run_id == "r2"


_STATUS = st.sampled_from([fs.Status.RUNNING, fs.Status.SUCCEEDED, fs.Status.FAILED])
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("save"),
            st.sampled_from(["a", "b"]),
            st.sampled_from(["r1", "r2", "r3"]),
            st.sampled_from([None, "p"]),
            _STATUS,
        ),
        st.tuples(st.just("invalidate"), st.sampled_from(["a", "b"]), st.sampled_from([None, "p"])),
    ),
    max_size=12,
)


@settings(max_examples=30)
@given(ops=_OPS)
async def test_latest_matches_a_model(
    store: MaterializationStore, ops: list[tuple[Any, ...]]
) -> None:
    """latest() is the last succeeded save since the last invalidate, per (asset, partition)."""
    prefix = uuid.uuid4().hex[:8]  # examples share the store
    model: dict[tuple[str, str | None], str | None] = {}
    for op in ops:
        if op[0] == "save":
            _, asset, run_id, partition, status = op
            await store.save_record(record(prefix + asset, run_id, status, partition=partition))
            if status is fs.Status.SUCCEEDED:
                model[asset, partition] = run_id
        else:
            _, asset, partition = op
            await store.invalidate(prefix + asset, partition)
            model[asset, partition] = None
    for asset in ("a", "b"):
        for partition in (None, "p"):
            latest = await store.latest(prefix + asset, partition)
            expected = model.get((asset, partition))
            assert (latest.run_id if latest else None) == expected


# -- IO managers ---------------------------------------------------------------------


def ctx(asset: str = "a", partition: str | None = None, run_id: str | None = None) -> IOContext:
    return IOContext(asset, partition, run_id)


async def test_io_store_load_exists_delete(io: IOManager) -> None:
    assert not await io.exists(ctx())
    with pytest.raises(fs.ValueNotFoundError, match="'a'"):
        await io.load(ctx())
    await io.store(ctx(), {"rows": [1, 2, 3]})
    assert await io.exists(ctx())
    assert await io.load(ctx()) == {"rows": [1, 2, 3]}
    await io.store(ctx(), [4])
    assert await io.load(ctx()) == [4]
    await io.delete(ctx())
    assert not await io.exists(ctx())
    await io.delete(ctx())


async def test_io_keeps_partitions_apart(io: IOManager) -> None:
    await io.store(ctx(partition="p1"), 1)
    await io.store(ctx(partition="p2"), 2)
    await io.store(ctx(), 0)
    assert await io.load(ctx(partition="p1")) == 1
    assert await io.load(ctx(partition="p2")) == 2
    assert await io.load(ctx()) == 0
    with pytest.raises(fs.ValueNotFoundError, match="'p3'"):
        await io.load(ctx(partition="p3"))
    assert isinstance(io, PartitionLister)
    assert sorted(await io.list_partitions("a"), key=str) == [None, "p1", "p2"]
    assert await io.list_partitions("b") == []


@settings(max_examples=40)
@given(
    value=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
async def test_io_round_trips_json_values(io: IOManager, value: Any) -> None:
    await io.store(ctx("json"), value)
    assert await io.load(ctx("json")) == value
