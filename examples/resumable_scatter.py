"""A scatter that picks up where it stopped: its items live in a barrier store.

The first run of ``geocoded`` meets a flaky service: a few items fail, more than the
asset tolerates, and the asset fails. The second run, with the same ``run_id``, runs only
the items that failed; the ones that succeeded keep their stored results. Run it with
``python examples/resumable_scatter.py``.

Swap ``MemoryBarrierStore()`` for ``PostgresBarrierStore(PostgresStore(dsn))`` and the
same holds across processes: a run killed halfway continues in a new process, and other
processes can join it with ``coordinator.work(...)``.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

import flowstone as fs
from flowstone.ext.scatter import (
    BarrierScatterCoordinator,
    MemoryBarrierStore,
    ScatterFailureThresholdExceeded,
    scatter,
)

calls: list[int] = []
service_down_for = {7, 19, 23}


@fs.asset
def addresses() -> list[str]:
    return [f"{n} Main Street" for n in range(30)]


@fs.asset
@scatter(items=lambda deps: deps["addresses"], max_concurrent=5, tolerated_failure=2)
async def geocoded(item: str) -> dict[str, object]:
    number = int(item.split()[0])
    calls.append(number)
    await anyio.lowlevel.checkpoint()  # the call to a geocoding service
    if number in service_down_for:
        raise ConnectionError("geocoder unavailable")
    return {"address": item, "lat": 50 + number / 100, "lon": 4 + number / 100}


async def main() -> None:
    coordinator = BarrierScatterCoordinator(MemoryBarrierStore())
    async with fs.Runtime(coordinators={"scatter": coordinator}) as rt:
        kept = 0
        try:
            await rt.materialize([addresses, geocoded], run_id="geocode-1")
        except ScatterFailureThresholdExceeded as error:
            kept = error.succeeded
            print(f"first run: {error.failed} items failed, {error.succeeded} succeeded")
        first = len(calls)
        service_down_for.clear()  # the service is back
        result = await rt.materialize([addresses, geocoded], run_id="geocode-1")
        again = len(calls) - first
        print(f"second run: ran {again} items; the {kept} that succeeded kept their results")
        print(f"geocoded {len(result['geocoded'])} addresses; first: {result['geocoded'][0]}")


if __name__ == "__main__":
    anyio.run(main)
