"""Re-materializing a finished run whose parallel asset is reused."""

from __future__ import annotations

import flowstone as fs
from flowstone.ext.parallel import Branches, branch, parallel


@fs.asset
async def tiles() -> int:
    return 1


@fs.asset
async def maps(tiles: int) -> int:
    return tiles + 1


@fs.asset
async def news() -> int:
    return 5


@fs.asset
@parallel(branch("maps", final="maps"), branch("news", final="news"))
async def gathered(branches: Branches) -> dict[str, int]:
    return {"maps": branches["maps"], "news": branches["news"]}


PIPELINE = fs.Pipeline([tiles, maps, news, gathered], name="gathering")


async def test_a_finished_run_again_lists_the_records_of_its_branches() -> None:
    async with fs.Runtime() as rt:
        first = await rt.materialize(PIPELINE, "gathered", run_id="twice")
        again = await rt.materialize(PIPELINE, "gathered", run_id="twice")
    assert set(first.records) == {"tiles", "maps", "news", "gathered"}
    assert again.resumed and again.ok
    assert set(again.records) == set(first.records)
    for name, record in again.records.items():
        stored = first.records[name]
        assert record.reused and record.run_id == "twice"
        assert (record.data_version, record.ended_at) == (stored.data_version, stored.ended_at)
    assert set(again.succeeded) == set(first.succeeded)
