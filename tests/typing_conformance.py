"""Type-checked only (``make lint``): each implementation satisfies its protocol.

Not collected by pytest; mypy fails if an implementation drifts from its protocol.
"""

from __future__ import annotations

from typing import Any

import flowstone as fs
from flowstone.protocols import EventSink, GateStore, IOManager, MaterializationStore

_store: MaterializationStore = fs.MemoryStore()
_io: IOManager = fs.MemoryIOManager()
_gates: GateStore = fs.MemoryGateStore()
_sink: EventSink = fs.MemoryEventSink()
_log_sink: EventSink = fs.LoggingSink()


@fs.asset
async def _typed(ctx: fs.Context, numbers: list[int]) -> int:
    return sum(numbers)


_def: fs.AssetDef[..., Any] = _typed

_mappings: list[fs.PartitionMapping] = [
    fs.IdentityMapping(),
    fs.TimeWindowMapping(),
    fs.LastN(7),
    fs.Offset(-1),
    fs.AllPartitions(),
    fs.StaticMapping({"a": "b"}),
    fs.MultiMapping({"date": fs.LastN(2)}),
]
_partitionings: list[fs.PartitionsDefinition] = [
    fs.WeeklyPartitions(start="2025-01-06"),
    fs.MultiPartitions({"a": fs.StaticPartitions(["x"])}),
    fs.DynamicPartitions("customers"),
]


@fs.asset(partitions=_partitionings[0], deps_partitions={"days": fs.TimeWindowMapping()})
async def _weekly(days: dict[str, int]) -> int:
    return sum(days.values())


from flowstone.ext.parallel import InProcessParallelCoordinator  # noqa: E402
from flowstone.ext.routing import InProcessRoutingCoordinator, RoutedCoordinator  # noqa: E402
from flowstone.protocols import Coordinator, ParallelCoordinator, RoutingCoordinator  # noqa: E402

_parallel: ParallelCoordinator = InProcessParallelCoordinator()
_routing: RoutingCoordinator = InProcessRoutingCoordinator()
_routed: Coordinator = RoutedCoordinator()

from flowstone.ext.scatter import InProcessScatterCoordinator  # noqa: E402
from flowstone.protocols import ScatterCoordinator  # noqa: E402

_scatter: ScatterCoordinator = InProcessScatterCoordinator()

from flowstone.ext.postgres import PostgresItemReader, PostgresStore  # noqa: E402
from flowstone.protocols import ItemReader, PipelinedRecordStore  # noqa: E402

_pg = PostgresStore("postgresql://localhost/db")
_pg_store: MaterializationStore = _pg
_pg_pipelined: PipelinedRecordStore = _pg
_pg_io: IOManager = _pg.io_manager
_pg_reader: ItemReader[dict[str, Any]] = PostgresItemReader(_pg, table="t")

from flowstone.ext.postgres import PostgresScatterCoordinator  # noqa: E402

_pg_scatter: ScatterCoordinator = PostgresScatterCoordinator(_pg)

from flowstone.ext.parquet import ParquetIOManager  # noqa: E402
from flowstone.protocols import PartitionLister  # noqa: E402

_parquet: IOManager = ParquetIOManager("./data/tables")
_parquet_lister: PartitionLister = ParquetIOManager("s3://lake/tables")

from flowstone.ext.dynamodb import DynamoDBItemReader  # noqa: E402
from flowstone.ext.s3 import S3IOManager, S3ItemReader  # noqa: E402

_s3: IOManager = S3IOManager("lake")
_s3_lister: PartitionLister = S3IOManager("lake", "flowstone")
_s3_reader: ItemReader[Any] = S3ItemReader("lake", "events/", format="jsonl")
_dynamodb_reader: ItemReader[dict[str, Any]] = DynamoDBItemReader("events")

from flowstone.ext.gates import GateCoordinator, Notifier, OpenGate, ResolutionFeed  # noqa: E402
from flowstone.ext.postgres import PostgresGateStore  # noqa: E402
from flowstone.protocols import Clock  # noqa: E402
from flowstone.testing import VirtualClock  # noqa: E402

_system_clock: Clock = fs.SystemClock()
_virtual_clock: Clock = VirtualClock()
_gate: Coordinator = GateCoordinator()
_pg_gates: GateStore = PostgresGateStore(_pg)
_pg_feed: ResolutionFeed = PostgresGateStore(_pg)


class _Mail:
    async def notify(self, gate: OpenGate) -> None:
        return None


_notifier: Notifier = _Mail()

from flowstone.protocols import CheckStore  # noqa: E402

_pg_checks: CheckStore = _pg


@fs.check(asset="_typed", severity="error")
def _typed_check(_typed: int) -> fs.CheckResult:
    return fs.CheckResult(passed=_typed >= 0, metadata={"value": _typed})


_check_def: fs.CheckDef = _typed_check
