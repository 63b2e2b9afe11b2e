"""Tags that event sinks store with each run (see :class:`~flowstone.protocols.RunTagger`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import RunRecord
    from .runtime import Runtime

__all__ = ["tagged"]

_log = logging.getLogger("flowstone")


async def tagged(runtime: Runtime, record: RunRecord, *, stored: bool = True) -> RunRecord:
    """``record`` with the tags of the runtime's run taggers added.

    The run's stored record is read first (unless ``stored`` is false: the run's id was
    just made, so nothing is stored under it), so that each tagger knows whether the run is
    resumed (and what it stored then). A tagger that fails is logged and left out, as a
    failing event sink is: it never fails the run.
    """
    earlier = await runtime.store.get_run(record.run_id) if stored else None
    tags = dict(record.tags)
    for tagger in runtime.run_taggers:
        try:
            tags.update(tagger.run_tags(record, earlier))
        except Exception:
            _log.exception("run tagger %r failed on run %s", tagger, record.run_id)
    return record.replace(tags=tags)
