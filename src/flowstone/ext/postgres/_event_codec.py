"""Lifecycle events as small JSON notifications, and back (for :class:`PostgresEvents`).

Only coarse events travel: run and asset status, scatter start, progress and end. An
event's fields are written as they are, except that errors become their ``"Type: message"``
text (read back as :class:`RemoteError`), a run's lists of asset names and an asset's
metadata are left out (they can be large: a notification holds under 8,000 bytes), and long
texts are cut.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from flowstone.events import (
    AssetFailed,
    AssetRetried,
    AssetSkipped,
    AssetStarted,
    AssetSucceeded,
    RunFinished,
    RunStarted,
)
from flowstone.ext.scatter import ScatterFinished, ScatterProgress, ScatterStarted

if TYPE_CHECKING:
    from flowstone.events import Event

__all__ = ["RELAYED", "RemoteError", "decode", "encode"]

#: The events relayed between processes, by class name.
RELAYED: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        RunFinished,
        AssetStarted,
        AssetRetried,
        AssetSucceeded,
        AssetFailed,
        AssetSkipped,
        ScatterStarted,
        ScatterProgress,
        ScatterFinished,
    )
}

_LEFT_OUT = frozenset({"succeeded", "failed", "skipped", "metadata"})
_TEXT_LIMIT = 500


class RemoteError(Exception):
    """The error of an event relayed from another process: its ``"Type: message"`` text."""


def _text(value: str) -> str:
    return value if len(value) <= _TEXT_LIMIT else value[: _TEXT_LIMIT - 1] + "…"


def encode(event: Event, origin: str) -> str:
    """The notification payload of ``event``, sent by the process ``origin``."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        name = field.name
        value = getattr(event, name)
        if (name in _LEFT_OUT and type(event) is RunFinished) or name == "metadata":
            continue
        if isinstance(value, BaseException):
            value = _text(f"{type(value).__name__}: {value}")
        elif isinstance(value, str):
            value = _text(value)
        elif isinstance(value, tuple):
            value = list(value)
        fields[name] = value
    return json.dumps({"o": origin, "k": type(event).__name__, "f": fields})


def decode(payload: str) -> tuple[str, Event] | None:
    """``(origin, event)`` of a payload, or ``None`` for one this code does not know."""
    try:
        data = json.loads(payload)
        cls = RELAYED[data["k"]]
        fields: dict[str, Any] = dict(data["f"])
        origin = str(data["o"])
    except (ValueError, KeyError, TypeError):
        return None
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in known:
            continue  # a newer sender's field
        if name == "error" and isinstance(value, str):
            value = RemoteError(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    try:
        return origin, cls(**kwargs)
    except TypeError:
        return None
