"""A fixture for tests of threads that block past a deadline (registered in ``conftest``).

``release`` is an event such a thread waits for. It is set in teardown, so the abandoned
threads end, and after :data:`SAFETY` seconds at the latest, so a test that is about to
fail does not hang.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

#: Long enough that an attempt waiting for the thread would clearly be too late, short
#: enough that a test which is about to fail does not hang: the event is set by then.
SAFETY = 10.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event blocked worker threads wait for; set in teardown so the threads end."""
    event = threading.Event()
    timer = threading.Timer(SAFETY, event.set)
    timer.start()
    yield event
    event.set()
    timer.cancel()
