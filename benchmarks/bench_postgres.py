"""PostgreSQL benchmarks: durable assets beside raw asyncpg round trips, in the same run.

Workloads:

- **sequential durable assets** — a chain of 200 trivial assets materialized through
  ``fs.Runtime(store=PostgresStore(...))``: time per asset, beside one raw asyncpg
  ``INSERT`` round trip on a plain connection (the least a durable step can cost). Target:
  within 2x. With the default ``write_behind=True`` an asset's dependents start while its
  record is written, records begun meanwhile commit together, and the run ends once every
  record is durable. The note gives the statements sent per asset and the in-memory
  runtime's cost per asset, which together say where the time goes;
- the same chain with ``write_behind=False``: every record durable before its dependents
  start, so one commit round trip per asset in the chain's critical path;
- the same chain with ``flush_interval=0`` (every record and value written as it comes):
  what batching a step's ``running`` record, value and terminal record into one statement
  saves;
- the chain again with only its last asset selected: the upstream 199 are checked and
  reused (current-record lookup + value check per asset).

It needs a server: ``FLOWSTONE_TEST_PG_DSN`` (default: the local test server). Each run
uses its own schema and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from time import perf_counter
from typing import TYPE_CHECKING, Any

import asyncpg

import flowstone as fs
from flowstone.ext.postgres import PostgresStore

if TYPE_CHECKING:
    from . import Report

__all__ = ["CHAIN_LENGTH", "run"]

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"
CHAIN_LENGTH = 200
TARGET = 2.0


def chain(length: int) -> fs.Pipeline:
    """``length`` trivial async assets, each taking the previous one's value."""

    async def root() -> int:
        return 0

    async def step(prev: int) -> int:
        return prev + 1

    assets: list[fs.AssetDef[..., Any]] = [fs.asset(name="s0")(root)]
    assets += [fs.asset(name=f"s{i}", deps={"prev": f"s{i - 1}"})(step) for i in range(1, length)]
    return fs.Pipeline(assets, name="bench_chain")


class Statements:
    """Counts statements sent on a pool's connections (asyncpg query logger)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        self.count += 1

    async def init(self, conn: asyncpg.Connection[Any]) -> None:
        conn.add_query_logger(self)


async def raw_insert_us(conn: asyncpg.Connection[Any], table: str, n: int) -> float:
    """Microseconds per single-row INSERT round trip on one plain connection."""
    await conn.execute(f"TRUNCATE {table}")
    payload = '{"value": 1}'
    started = perf_counter()
    for i in range(n):
        await conn.execute(f"INSERT INTO {table} (id, v) VALUES ($1, $2::jsonb)", i, payload)
    return (perf_counter() - started) / n * 1e6


async def chain_us(rt: fs.Runtime, pipeline: fs.Pipeline, select: Any = None) -> float:
    """Microseconds per asset of one materialize of ``pipeline`` (new run each time)."""
    started = perf_counter()
    result = await rt.materialize(pipeline, select)
    elapsed = perf_counter() - started
    assert result.ok
    return elapsed / len(pipeline.assets) * 1e6


async def memory_chain_us(pipeline: fs.Pipeline, repeat: int) -> float:
    async with fs.Runtime() as rt:
        await chain_us(rt, pipeline)
        return min([await chain_us(rt, pipeline) for _ in range(repeat)])


async def run(report: Report) -> None:
    """Run the PostgreSQL workloads and report them."""
    dsn = os.environ.get("FLOWSTONE_TEST_PG_DSN", DEFAULT_DSN)
    repeat = 3 if report.quick else 7
    schema = f"fs_bench_{uuid.uuid4().hex[:8]}"
    pipeline = chain(CHAIN_LENGTH)
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"no PostgreSQL at FLOWSTONE_TEST_PG_DSN: {exc}") from exc
    table = f'"{schema}".raw_inserts'
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v jsonb)")
        memory_us = await memory_chain_us(pipeline, repeat)

        results: dict[str, list[float]] = {
            "batched": [],
            "strict": [],
            "unbatched": [],
            "reuse": [],
            "raw": [],
        }
        statements: dict[str, float] = {}
        for mode, interval, behind in (
            ("batched", 0.1, True),
            ("strict", 0.1, False),
            ("unbatched", 0.0, False),
        ):
            counter = Statements()
            store = PostgresStore(
                dsn,
                schema=schema,
                flush_interval=interval,
                write_behind=behind,
                max_size=2,
                connect_options={"init": counter.init},
            )
            async with fs.Runtime(store=store) as rt:
                await chain_us(rt, pipeline)  # warm up: statement caches, type introspection
                for _ in range(repeat):
                    results["raw"].append(await raw_insert_us(admin, table, CHAIN_LENGTH))
                    counter.count = 0
                    results[mode].append(await chain_us(rt, pipeline))
                    statements[mode] = counter.count / CHAIN_LENGTH
                if mode == "batched":
                    for _ in range(repeat):
                        counter.count = 0
                        results["reuse"].append(
                            await chain_us(rt, pipeline, f"s{CHAIN_LENGTH - 1}")
                        )
                        statements["reuse"] = counter.count / CHAIN_LENGTH
        raw = min(results["raw"])
        batched = min(results["batched"])
        ratio = batched / raw
        verdict = "meets" if ratio <= TARGET else "misses"
        report(
            f"sequential durable assets (chain of {CHAIN_LENGTH})",
            batched,
            raw,
            "µs/asset",
            f"{ratio:.2f}x of one raw INSERT round trip ({verdict} the {TARGET:g}x target); "
            f"{statements['batched']:.2f} statements/asset; in-memory runtime "
            f"{memory_us:.0f} µs/asset",
        )
        strict = min(results["strict"])
        report(
            "durable chain, each record durable before its dependents (write_behind=False)",
            strict,
            raw,
            "µs/asset",
            f"{strict / raw:.2f}x of one raw INSERT round trip; "
            f"{statements['strict']:.2f} statements/asset",
        )
        unbatched = min(results["unbatched"])
        report(
            "durable chain, unbatched writes (flush_interval=0)",
            unbatched,
            raw,
            "µs/asset",
            f"{statements['unbatched']:.2f} statements/asset; batching saves "
            f"{unbatched - strict:.0f} µs/asset",
        )
        report(
            "durable chain, upstream reused (last asset selected)",
            min(results["reuse"]),
            raw,
            "µs/asset",
            f"{statements['reuse']:.2f} statements/asset (current record, value check, reused record, value load)",
        )
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
