"""Resuming runs whose gates closed: :class:`GateResumer`, the gate half of
``flowstone worker``.

A run that suspended on a gate ends ``waiting``; once its gate is signalled, approved,
rejected, cancelled or past its deadline, a resume applies that. A resumer looks for such
runs of its (named) pipeline: at start-up (gates resolved while no process was alive),
whenever a gate closes anywhere (``NOTIFY`` on the schema's gate channel), at the next
gate deadline on the runtime's clock, and every ``poll_interval`` as a fallback. Each run
is resumed under a PostgreSQL advisory lock held for the resume, and checked again once
the lock is held, so of several resumers on several machines exactly one resumes it.
Nothing upstream of the gate runs again: the resume reuses what the run finished.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from flowstone import ConfigurationError

from ._gates import PostgresGateStore
from ._sql import advisory_key
from ._store import PostgresStore

if TYPE_CHECKING:
    from datetime import datetime

    import asyncpg

    from flowstone import Pipeline, Runtime

__all__ = ["GateResumer", "ResumerStats"]

_log = logging.getLogger("flowstone.postgres")
_LOCK_NAMESPACE = "flowstone.gate-resume"


@dataclass(slots=True)
class ResumerStats:
    """What a resumer did.

    :ivar resumed: the run ids it resumed, in order
    :ivar statuses: how each resume ended (a run status value, or ``"error: Type"`` for
        a run that could not be resumed here, which it then leaves alone), by run id
    """

    resumed: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)


class GateResumer:
    """Resumes the waiting runs of ``pipeline`` whose gates closed or expired.

    :param runtime: a runtime whose store is a :class:`PostgresStore` (with the gate
        secret, when a resumed run may open a new gate)
    :param pipeline: the named pipeline whose runs it resumes
    :param poll_interval: the longest wait between two looks (a fallback for a missed
        notification)
    :param stop_when_idle: return once nothing was due for ``idle_timeout`` seconds
    :param idle_timeout: seconds of idleness that end it with ``stop_when_idle``
    :raises ConfigurationError: not a PostgreSQL runtime, or an unnamed pipeline
    """

    def __init__(
        self,
        runtime: Runtime,
        pipeline: Pipeline,
        *,
        poll_interval: float = 30.0,
        stop_when_idle: bool = False,
        idle_timeout: float = 5.0,
    ) -> None:
        if not isinstance(runtime.store, PostgresStore):
            raise ConfigurationError(
                "a gate resumer needs a runtime whose store is a PostgresStore, not "
                f"{type(runtime.store).__name__}"
            )
        if not pipeline.name:
            raise ConfigurationError(
                "a gate resumer finds runs by their pipeline's name: give the pipeline one, "
                "fs.Pipeline([...], name=...)"
            )
        if not poll_interval > 0 or idle_timeout < 0:
            raise ConfigurationError("poll_interval must be positive and idle_timeout >= 0")
        self.runtime = runtime
        self.store: PostgresStore = runtime.store
        self.pipeline = pipeline
        self._poll_interval = poll_interval
        self._stop_when_idle = stop_when_idle
        self._idle_timeout = idle_timeout
        self._stopping = False
        self._poked = anyio.Event()
        self._refused: set[str] = set()
        self.stats = ResumerStats()

    def __repr__(self) -> str:
        return f"GateResumer(schema={self.store.schema!r}, pipeline={self.pipeline.name!r})"

    def stop(self) -> None:
        """Stop looking; a resume under way finishes first."""
        self._stopping = True
        self._poked.set()

    def _poke(self, _gate_id: str) -> None:
        self._poked.set()

    # -- queries -----------------------------------------------------------------------

    def _due_sql(self, one: bool) -> str:
        t = self.store.table
        only = " AND r.run_id = $3" if one else ""
        return (
            f"SELECT DISTINCT r.run_id, r.started_at FROM {t('runs')} r"
            f" JOIN {t('materializations')} m ON m.run_id = r.run_id AND m.status = 'waiting'"
            " JOIN LATERAL (SELECT g.status, g.expires_at"
            f" FROM {t('gates')} g WHERE g.run_id = m.run_id AND g.asset = m.asset"
            " AND g.partition_id = m.partition_id ORDER BY g.seq DESC LIMIT 1) g ON true"
            " WHERE r.status = 'waiting' AND r.pipeline = $1"
            f" AND (g.status <> 'waiting' OR g.expires_at <= $2){only}"
            " ORDER BY r.started_at"
        )

    async def due(self) -> list[str]:
        """The waiting runs of the pipeline with a gate closed or past its deadline."""
        sql = self._due_sql(one=False)
        now = self.runtime.clock.now()
        rows = await self.store.call(
            "find runs whose gates closed",
            lambda conn: conn.fetch(sql, self.pipeline.name, now),
        )
        return [row["run_id"] for row in rows]

    async def _next_deadline(self) -> datetime | None:
        t = self.store.table
        sql = (
            f"SELECT min(g.expires_at) FROM {t('gates')} g JOIN {t('runs')} r"
            " ON r.run_id = g.run_id WHERE g.status = 'waiting' AND r.status = 'waiting'"
            " AND r.pipeline = $1"
        )
        value: datetime | None = await self.store.call(
            "find the next gate deadline", lambda conn: conn.fetchval(sql, self.pipeline.name)
        )
        return value

    # -- resuming ----------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Resume every run due now, each under its lock; return the ones resumed here."""
        resumed: list[str] = []
        for run_id in await self.due():
            if self._stopping:
                break
            if run_id in self._refused:
                continue
            if await self._resume_locked(run_id):
                resumed.append(run_id)
        return resumed

    async def _resume_locked(self, run_id: str) -> bool:
        key = advisory_key(_LOCK_NAMESPACE + ":" + self.store.schema, run_id)
        conn: asyncpg.Connection[asyncpg.Record] = await self.store.connect_dedicated()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key):
                return False  # another resumer has it
            try:
                # Still due once the lock is held? (Another resumer may have just finished.)
                sql = self._due_sql(one=True)
                now = self.runtime.clock.now()
                if await conn.fetchrow(sql, self.pipeline.name, now, run_id) is None:
                    return False
                try:
                    result = await self.runtime.resume(run_id, self.pipeline, raise_on_error=False)
                except Exception as exc:  # this run cannot be resumed here: say so, go on
                    self._refused.add(run_id)
                    self.stats.statuses[run_id] = f"error: {type(exc).__name__}"
                    _log.error("could not resume run %s: %s", run_id, exc)
                    return False
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", *key)
        finally:
            await conn.close()
        self.stats.resumed.append(run_id)
        self.stats.statuses[run_id] = result.status.value
        _log.info("resumed run %s: %s", run_id, result.status.value)
        return True

    async def run(self) -> ResumerStats:
        """Sweep at start-up, then whenever a gate closes or falls due, until :meth:`stop`
        (or, with ``stop_when_idle``, until idle)."""
        await self.runtime.open()
        gate_store = self.runtime.gate_store
        clock = self.runtime.clock
        idle_since = anyio.current_time()
        while not self._stopping:
            self._poked = anyio.Event()
            if isinstance(gate_store, PostgresGateStore):
                await gate_store.listen(self._poke)  # again after a lost connection
            if await self.sweep():
                idle_since = anyio.current_time()
                continue
            if self._stop_when_idle and anyio.current_time() - idle_since >= self._idle_timeout:
                break
            wait = self._idle_timeout if self._stop_when_idle else self._poll_interval
            until = clock.now() + timedelta(seconds=min(wait, self._poll_interval))
            deadline = await self._next_deadline()
            if deadline is not None and deadline < until:
                until = deadline
            await _first_of(self._poked.wait, functools.partial(clock.sleep_until, until))
        return self.stats


async def _first_of(*waits: Any) -> None:
    """Return when the first of ``waits`` (async callables) returns."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Any) -> None:
            await wait()
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


async def resume_gated_runs(runtime: Runtime, pipeline: Pipeline) -> list[str]:
    """Resume, once, the waiting runs of ``pipeline`` whose gates closed or expired.

    :return: the run ids resumed by this call
    """
    return await GateResumer(runtime, pipeline).sweep()


def has_gates(pipeline: Pipeline) -> bool:
    """Whether ``pipeline`` has gate assets (a worker then resumes its gated runs)."""
    return any(asset_def.kind == "gate" for asset_def in pipeline.assets.values())
