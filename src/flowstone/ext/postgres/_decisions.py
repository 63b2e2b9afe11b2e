"""Durable routing decisions and parallel branch records: the in-process coordinators'
logic, with what they keep stored in PostgreSQL.

:class:`PostgresRoutingCoordinator` and :class:`PostgresParallelCoordinator` subclass the
routing and parallel plugins' in-process coordinators and replace only their storage
methods (``record_decision``/``get_decision`` and ``save_branch``/``branches``), so
deciding, running branches and joining stay written once. Each write commits before it
returns: a router's decision is durable before any routed asset starts, so a run resumed
in another process after a crash reuses it and never takes the other path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from flowstone import Status
from flowstone.ext.parallel import InProcessParallelCoordinator
from flowstone.ext.routing import InProcessRoutingCoordinator
from flowstone.protocols import BranchRecord, RouteDecision

from ._sql import partition_id, qualified

if TYPE_CHECKING:
    from ._database import PostgresDatabase

__all__ = ["PostgresParallelCoordinator", "PostgresRoutingCoordinator"]


class PostgresRoutingCoordinator(InProcessRoutingCoordinator):
    """Executes routers like :class:`~flowstone.ext.routing.InProcessRoutingCoordinator`,
    keeping their decisions in the store's ``route_decisions`` table.

    Installed for the ``"router"`` kind by :meth:`PostgresStore.install`.
    """

    def __init__(self, store: PostgresDatabase) -> None:
        super().__init__()
        self._store = store

    def _table(self) -> str:
        return qualified(self._store.schema, "route_decisions")

    async def record_decision(self, decision: RouteDecision) -> None:
        """Store a decision (committed on return), replacing an earlier one of the same
        (run, router, partition)."""
        sql = (
            f"INSERT INTO {self._table()} (run_id, router, partition_id, partition_key, chosen,"
            " input_versions, decided_at) VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)"
            " ON CONFLICT (run_id, router, partition_id) DO UPDATE SET"
            " partition_key = EXCLUDED.partition_key, chosen = EXCLUDED.chosen,"
            " input_versions = EXCLUDED.input_versions, decided_at = EXCLUDED.decided_at"
        )
        args = (
            decision.run_id,
            decision.router,
            partition_id(decision.partition),
            decision.partition,
            decision.chosen,
            json.dumps(dict(decision.input_versions), sort_keys=True),
            decision.decided_at,
        )
        await self._store.call(
            f"record the decision of router {decision.router!r} in run {decision.run_id!r}",
            lambda conn: conn.execute(sql, *args),
        )

    async def get_decision(
        self, run_id: str, router: str, partition: str | None
    ) -> RouteDecision | None:
        """The decision stored for (run, router, partition), if any."""
        sql = (
            f"SELECT chosen, input_versions::text AS input_versions, decided_at"
            f" FROM {self._table()} WHERE run_id = $1 AND router = $2 AND partition_id = $3"
        )
        row = await self._store.call(
            f"read the decision of router {router!r} in run {run_id!r}",
            lambda conn: conn.fetchrow(sql, run_id, router, partition_id(partition)),
        )
        if row is None:
            return None
        return RouteDecision(
            run_id=run_id,
            router=router,
            partition=partition,
            chosen=row["chosen"],
            input_versions=json.loads(row["input_versions"]),
            decided_at=row["decided_at"],
        )


class PostgresParallelCoordinator(InProcessParallelCoordinator):
    """Executes parallel assets like
    :class:`~flowstone.ext.parallel.InProcessParallelCoordinator`, keeping branch records in
    the store's ``parallel_branches`` table, where any process can read them.

    Installed for the ``"parallel"`` kind by :meth:`PostgresStore.install`.
    """

    def __init__(self, store: PostgresDatabase) -> None:
        super().__init__()
        self._store = store

    def _table(self) -> str:
        return qualified(self._store.schema, "parallel_branches")

    async def save_branch(self, record: BranchRecord) -> None:
        """Insert or replace the record of one branch (committed on return); a replaced
        record keeps its place in the order branches started."""
        sql = (
            f"INSERT INTO {self._table()} (run_id, asset, partition_id, partition_key, branch,"
            " final, status, required, started_at, ended_at, error)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (run_id, asset, partition_id, branch) DO UPDATE SET"
            " final = EXCLUDED.final, status = EXCLUDED.status, required = EXCLUDED.required,"
            " started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,"
            " error = EXCLUDED.error"
        )
        args = (
            record.run_id,
            record.asset,
            partition_id(record.partition),
            record.partition,
            record.branch,
            record.final,
            record.status.value,
            record.required,
            record.started_at,
            record.ended_at,
            record.error,
        )
        await self._store.call(
            f"record branch {record.branch!r} of {record.asset!r} in run {record.run_id!r}",
            lambda conn: conn.execute(sql, *args),
        )

    async def branches(self, run_id: str, asset: str, partition: str | None) -> list[BranchRecord]:
        """The branch records of a parallel asset in a run, in the order branches started."""
        sql = (
            "SELECT branch, final, status, required, started_at, ended_at, error"
            f" FROM {self._table()} WHERE run_id = $1 AND asset = $2 AND partition_id = $3"
            " ORDER BY started_at NULLS LAST, seq"
        )
        rows = await self._store.call(
            f"read the branches of {asset!r} in run {run_id!r}",
            lambda conn: conn.fetch(sql, run_id, asset, partition_id(partition)),
        )
        return [
            BranchRecord(
                run_id=run_id,
                asset=asset,
                partition=partition,
                branch=row["branch"],
                final=row["final"],
                status=Status(row["status"]),
                required=row["required"],
                started_at=row["started_at"],
                ended_at=row["ended_at"],
                error=row["error"],
            )
            for row in rows
        ]
