"""Structured logs: ``record.flowstone`` on ``ctx.log`` and LoggingSink records, chosen
levels, ``flowstone.logging.JSONFormatter`` and ``ContextFilter``, and no value in any line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

import flowstone as fs
import flowstone.logging as fslog
from flowstone.events import AssetSucceeded

SECRET = "v4lue-9d2e-never-logged"


class Lines(logging.Handler):
    """Keeps each record, and each record formatted as JSON."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(fslog.JSONFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    handler.addFilter(fslog.ContextFilter())
    for name in ("flowstone", "shop"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for name in ("flowstone", "shop"):
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(logging.NOTSET)


DAYS = fs.StaticPartitions(["d1"])


@fs.asset(partitions=DAYS)
def secret() -> str:
    return SECRET


@fs.asset(partitions=DAYS, retry=fs.Retry(attempts=2, backoff=0))
def counted(ctx: fs.Context, secret: str) -> int:
    ctx.log.info("counting %d characters", len(secret))
    logging.getLogger("shop").warning("a library line, attempt %d", ctx.attempt)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return len(secret)


async def test_ctx_log_records_carry_the_invocation_fields(lines: Lines) -> None:
    pipeline = fs.Pipeline([secret, counted], name="shop")
    result = await fs.Runtime(event_sinks=[fs.LoggingSink()]).materialize(pipeline, partition="d1")
    assert result["counted"] == len(SECRET)
    own = [r for r in lines.records if r.getMessage().endswith("characters")]
    assert [r.flowstone for r in own] == [  # type: ignore[attr-defined]
        {
            "run_id": result.run_id,
            "pipeline": "shop",
            "asset": "counted",
            "partition": "d1",
            "attempt": attempt,
        }
        for attempt in (1, 2)
    ]
    # Another logger inside the asset gets them through the filter.
    library = [r for r in lines.records if r.name == "shop"]
    assert [r.flowstone["attempt"] for r in library] == [1, 2]  # type: ignore[attr-defined]
    # The JSON line has them too, without the empty ones.
    first = json.loads(next(line for line in lines.lines if "counting" in line))
    assert first["flowstone"] == {
        "run_id": result.run_id,
        "pipeline": "shop",
        "asset": "counted",
        "partition": "d1",
        "attempt": 1,
    }
    assert first["level"] == "INFO" and first["logger"] == "flowstone"
    assert first["message"].endswith("counting 23 characters")
    # Lifecycle events, through the LoggingSink, carry the event's fields.
    retried = next(
        r for r in lines.records if getattr(r, "flowstone", {}).get("event") == "AssetRetried"
    )
    assert retried.flowstone == {  # type: ignore[attr-defined]
        "event": "AssetRetried",
        "run_id": result.run_id,
        "asset": "counted",
        "partition": "d1",
    }
    assert retried.levelno == logging.WARNING
    # No line holds the stored value.
    assert lines.lines and not [line for line in lines.lines if SECRET in line]


async def test_the_logging_sink_logs_events_at_chosen_levels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = fs.LoggingSink(levels={AssetSucceeded: logging.INFO, "RunStarted": logging.WARNING})
    with caplog.at_level(logging.INFO, logger="flowstone"):
        await fs.Runtime(event_sinks=[sink]).materialize([secret], partition="d1")
    levels = {r.flowstone["event"]: r.levelno for r in caplog.records}  # type: ignore[attr-defined]
    assert levels == {
        "RunStarted": logging.WARNING,
        "AssetSucceeded": logging.INFO,
        "RunFinished": logging.INFO,
    }


def test_the_json_formatter_writes_extra_fields_and_exceptions() -> None:
    logger = logging.getLogger("flowstone.test.json")
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "failed %s",
        ("x",),
        None,
        extra={"n": 3, "o": object()},
    )
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = json.loads(fslog.JSONFormatter().format(record))
    assert line["message"] == "failed x"
    assert line["n"] == 3
    assert line["o"].startswith("<object object")
    assert "flowstone" not in line  # outside an asset, and none given
    assert "ValueError: boom" in line["exception"]
    assert line["time"].endswith("+00:00")
