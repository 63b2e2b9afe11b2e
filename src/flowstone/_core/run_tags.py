"""Tags that event sinks store with each run (see :class:`~flowstone.protocols.RunTagger`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import RunRecord
    from .runtime import Runtime

__all__ = ["tagged"]

_log = logging.getLogger("flowstone")


async def tagged(runtime: Runtime, record: RunRecord) -> RunRecord:
    """``record`` with the tags of the runtime's run taggers added.

    The run's stored record is read first, so that each tagger knows whether the run is
    resumed (and what it stored then). A tagger that fails is logged and left out, as a
    failing event sink is: it never fails the run.
    """
    stored = await runtime.store.get_run(record.run_id)
    tags = dict(record.tags)
    for tagger in runtime.run_taggers:
        try:
            tags.update(tagger.run_tags(record, stored))
        except Exception:
            _log.exception("run tagger %r failed on run %s", tagger, record.run_id)
    return record.replace(tags=tags)
