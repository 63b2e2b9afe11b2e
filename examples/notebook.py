"""A notebook session, as a script: redefine an asset and only what it affects runs again.

In Jupyter each ``# %%`` block below is a cell, and ``await`` works at the top level of a
cell. Here the cells are the body of ``async def main()``, run by ``anyio.run(main)``; run it
with ``python examples/notebook.py``. Every cell uses the default in-memory runtime of the
running loop, so stored values carry over from cell to cell, as in a kernel.

A stored value is reused while it is current: same code (a fingerprint of the function, or
its ``code_version``) and same input versions. Redefining ``cleaned`` makes it and its
descendants stale; ``readings`` and ``sensor_count`` stay current and are not computed again.
"""

from __future__ import annotations

import anyio

import flowstone as fs

__all__ = ["main"]

#: The asset functions that actually ran since the last :func:`show`.
ran: list[str] = []


def show(title: str, result: fs.MaterializeResult) -> None:
    """Print what ran and what was reused in ``result`` (and forget what ran)."""
    reused = sorted(name for name, record in result.records.items() if record.reused)
    print(f"[{title}] {result.status.value}: report = {result['report']!r}")
    print(f"  ran:    {', '.join(sorted(ran)) or '-'}")
    print(f"  reused: {', '.join(reused) or '-'}")
    ran.clear()


async def main() -> None:
    """The notebook's cells, in order."""

    # %% Define the assets: sensor readings, cleaned, averaged; a count on the side.
    @fs.asset
    async def readings() -> list[float]:
        """Temperature readings; -99 marks a broken sensor."""
        ran.append("readings")
        return [12.1, 13.4, -99.0, 14.2, 15.8, 13.9, -99.0, 16.1]

    @fs.asset
    def cleaned(readings: list[float]) -> list[float]:
        """The readings without the broken-sensor markers."""
        ran.append("cleaned")
        return [r for r in readings if r > -50]

    @fs.asset
    async def average(cleaned: list[float]) -> float:
        """The mean temperature."""
        ran.append("average")
        return round(sum(cleaned) / len(cleaned), 2)

    @fs.asset
    async def sensor_count(readings: list[float]) -> int:
        """How many readings came in (broken or not)."""
        ran.append("sensor_count")
        return len(readings)

    @fs.asset
    async def report(average: float, sensor_count: int) -> str:
        """One line for the dashboard."""
        ran.append("report")
        return f"{average} °C over {sensor_count} readings"

    pipeline = fs.Pipeline([readings, cleaned, average, sensor_count, report], name="sensors")
    print(pipeline.graph("text"))

    # %% First run: everything is computed.
    result = await fs.materialize(pipeline, "report")
    show("first run", result)

    # %% Run again, nothing changed: the selected asset runs, its upstream is reused.
    result = await fs.materialize(pipeline, "report")
    show("unchanged", result)

    # %% Redefine `cleaned` (readings above 15 °C turned out to be a faulty probe too).
    @fs.asset  # type: ignore[no-redef]  # redefining a cell's asset is the point here
    def cleaned(readings: list[float]) -> list[float]:
        """The readings without broken-sensor markers and faulty-probe values."""
        ran.append("cleaned")
        return [r for r in readings if -50 < r <= 15]

    pipeline = fs.Pipeline([readings, cleaned, average, sensor_count, report], name="sensors")
    states = await fs.status(pipeline)
    stale = sorted(name for name, state in states.items() if not state.current)
    print(f"[redefined cleaned] stale: {', '.join(stale)}")

    # %% Materialize: `cleaned` and its descendants run; `readings`, `sensor_count` are reused.
    result = await fs.materialize(pipeline, "report")
    show("after redefinition", result)


if __name__ == "__main__":
    anyio.run(main)
