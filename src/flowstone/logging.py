"""Structured logging for flowstone: the fields every record carries, and JSON lines.

Records written through ``ctx.log`` and the :class:`~flowstone.LoggingSink` carry a
``flowstone`` attribute, a mapping with the run id, pipeline, asset, partition and attempt
(those that apply), so any standard handler or formatter can use them::

    import logging
    import flowstone.logging

    handler = logging.StreamHandler()
    handler.setFormatter(flowstone.logging.JSONFormatter())
    handler.addFilter(flowstone.logging.ContextFilter())  # other loggers, inside assets
    logging.getLogger().addHandler(handler)

No record carries a stored value, an argument or a gate token: only identifiers.
"""

from ._core.logs import FIELDS as FIELDS
from ._core.logs import ContextFilter as ContextFilter
from ._core.logs import JSONFormatter as JSONFormatter

__all__ = ("FIELDS", "ContextFilter", "JSONFormatter")

for _name in ("ContextFilter", "JSONFormatter"):
    globals()[_name].__module__ = __name__
del _name
