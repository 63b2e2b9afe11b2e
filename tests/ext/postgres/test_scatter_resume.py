"""A durable scatter that failed cleanly (the store refused a write) resumes like one that
was killed: the items it finished are kept, only those in flight run again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import flowstone as fs
from flowstone.ext.scatter import scatter

asyncpg = pytest.importorskip("asyncpg")

from flowstone.ext.postgres import PostgresStore  # noqa: E402 - after the skip
from flowstone.ext.postgres._scatter import PostgresScatterCoordinator  # noqa: E402

pytestmark = pytest.mark.postgres

MAX_CONCURRENT = 4


async def refuse_items_from(conn: asyncpg.Connection, schema: str, first: int) -> None:
    """Make the store refuse to insert scatter items at position ``first`` or later."""
    await conn.execute(
        f"""
        CREATE FUNCTION "{schema}".refuse_item() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.idx >= {first} THEN
                RAISE EXCEPTION 'no room for item %', NEW.idx;
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_item BEFORE INSERT ON "{schema}".scatter_items
            FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse_item();
        """
    )


async def test_a_scatter_failed_by_the_store_keeps_its_finished_items(
    pg_store: PostgresStore, pg_conn: asyncpg.Connection, pg_schema: str
) -> None:
    runs: list[list[int]] = [[], []]
    attempt = 0
    await pg_store.migrate()
    await refuse_items_from(pg_conn, pg_schema, 100)

    async def succeeded() -> int:
        sql = f"SELECT count(*) FROM \"{pg_schema}\".scatter_items WHERE status = 'succeeded'"
        return int(await pg_conn.fetchval(sql))

    async def source() -> AsyncIterator[dict[str, int]]:
        for i in range(300):
            if i == 100 and attempt == 0:
                # The next page is refused once many items of the first ones are stored.
                with anyio.fail_after(20):
                    while await succeeded() < 60:
                        await anyio.sleep(0.01)
            yield {"id": i}

    @fs.asset
    @scatter(
        items=lambda deps: source(),
        key=lambda o: str(o["id"]),
        max_concurrent=MAX_CONCURRENT,
        page_size=50,
    )
    async def keyed(item: dict[str, int]) -> int:
        runs[attempt].append(item["id"])
        await anyio.sleep(0.002)
        return item["id"] * 2

    coordinator = PostgresScatterCoordinator(pg_store, lease=2)
    runtime = fs.Runtime(store=pg_store)
    runtime.coordinators.register("scatter", coordinator)
    async with runtime:
        with pytest.raises(fs.AssetExecutionError, match="no room for item 100") as caught:
            await runtime.materialize([keyed], run_id="full")
        assert isinstance(caught.value.__cause__, fs.StorageError)
        status = await pg_conn.fetchval(f'SELECT status FROM "{pg_schema}".scatter_barriers')
        assert status == "failed"
        kept = await succeeded()
        assert kept >= 60
        await pg_conn.execute(f'DROP TRIGGER refuse_item ON "{pg_schema}".scatter_items')
        attempt = 1
        result = await runtime.materialize([keyed], run_id="full")
    assert result["keyed"] == [i * 2 for i in range(300)]
    again = set(runs[0]) & set(runs[1])
    assert len(again) <= 2 * MAX_CONCURRENT  # only what was in flight when it failed
    assert sorted(runs[1]) == sorted(set(range(300)) - set(runs[0]) | again)
    rows: Any = await pg_conn.fetch(f'SELECT status FROM "{pg_schema}".scatter_items')
    assert len(rows) == 300 and {r["status"] for r in rows} == {"succeeded"}
