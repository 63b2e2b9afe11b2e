"""Structured logs: the fields of flowstone's log records, a JSON formatter, a filter.

Every record that ``ctx.log`` and the :class:`~flowstone.LoggingSink` write carries a
``flowstone`` attribute: a mapping of the run id, pipeline, asset, partition and attempt (as
far as they apply), so any handler or formatter can use them. :class:`ContextFilter` adds
the same mapping to records of other loggers written inside an asset (an application's
``logging.getLogger("flowstone.shop")``, a library's), from the asset's context.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from .context import _current

__all__ = ["FIELDS", "ContextFilter", "JSONFormatter"]

#: The record attribute holding flowstone's fields.
FIELDS = "flowstone"

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", FIELDS}
)


class ContextFilter(logging.Filter):
    """Adds ``record.flowstone`` (see :meth:`flowstone.Context.log_fields`) to records
    logged inside an asset that do not have it yet; always lets the record through.

    Attach it to a handler, so that it sees the records of every logger that propagate to
    it: ``handler.addFilter(flowstone.logging.ContextFilter())``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields of the current asset's context, if any; keep the record."""
        if not hasattr(record, FIELDS):
            ctx = _current.get()
            if ctx is not None:
                setattr(record, FIELDS, ctx.log_fields())
        return True


class JSONFormatter(logging.Formatter):
    """Formats each record as one line of JSON (standard library only).

    The object has ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; then
    ``flowstone`` (the record's flowstone fields, those that are set), the fields given with
    ``extra=`` (values that are not JSON become their ``repr``), and ``exception`` (the
    formatted traceback) when there is one.

    :param fields: also read the current asset's context for records without flowstone
        fields (as :class:`ContextFilter` does)
    """

    def __init__(self, *, fields: bool = True) -> None:
        super().__init__()
        self.fields = fields

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        found = getattr(record, FIELDS, None)
        if found is None and self.fields:
            ctx = _current.get()
            found = ctx.log_fields() if ctx is not None else None
        if not isinstance(found, dict):
            found = {}
        if found:
            line[FIELDS] = {k: v for k, v in found.items() if v is not None}
        for name, value in vars(record).items():
            if name in _STANDARD or name.startswith("_") or name in line:
                continue
            if name in found and found[name] == value:
                continue  # ctx.log sets its fields as attributes too
            line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=repr, ensure_ascii=False)
