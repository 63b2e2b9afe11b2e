"""The seam between asyncpg and flowstone: error mapping and bounded retries.

:func:`map_errors` turns asyncpg and socket errors into flowstone errors (the original is
``__cause__``); :func:`retrying` re-runs an idempotent operation while the failure is a
transient one (a dropped connection, a restarting server, a serialization conflict), with
exponential backoff, for a bounded time. Every database operation of the plugin goes
through both, so a flaky connection never leaks a raw driver error or half an operation.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import asyncpg

from flowstone import ConfigurationError, FlowstoneError, StorageError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = [
    "DatabaseUnavailableError",
    "RetryPolicy",
    "SchemaVersionError",
    "describe",
    "is_transient",
    "map_errors",
    "retrying",
]

T = TypeVar("T")

_log = logging.getLogger("flowstone.postgres")

#: SQLSTATEs worth retrying: the statement did not take effect and may succeed later.
_TRANSIENT_SQLSTATES = frozenset(
    {
        "57P01",  # admin_shutdown (pg_terminate_backend, server stop)
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (server starting up)
        "53300",  # too_many_connections
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "0A000",  # feature_not_supported: asyncpg's InvalidCachedStatementError after DDL
    }
)


class DatabaseUnavailableError(StorageError):
    """PostgreSQL stayed unreachable (or kept dropping connections) past the retry budget.

    :param operation: what was being done, e.g. ``"save the record of asset 'orders'"``
    :param waited: seconds spent retrying
    :param attempts: attempts made
    """

    def __init__(self, operation: str, waited: float, attempts: int, error: BaseException) -> None:
        self.operation = operation
        self.waited = waited
        self.attempts = attempts
        super().__init__(
            f"PostgreSQL unavailable: could not {operation} after {attempts} attempt(s) "
            f"over {waited:.1f} s: {describe(error)}"
        )


class SchemaVersionError(ConfigurationError):
    """The database schema's version does not match what this flowstone knows.

    :param schema: the PostgreSQL schema
    :param found: the newest migration applied in the database (0: none)
    :param expected: the newest migration this code ships
    """

    def __init__(self, schema: str, found: int, expected: int) -> None:
        self.schema = schema
        self.found = found
        self.expected = expected
        if found > expected:
            message = (
                f"schema {schema!r} is at migration {found}, newer than the {expected} this "
                "flowstone knows; upgrade flowstone (or use another schema)"
            )
        else:
            message = (
                f"schema {schema!r} is at migration {found} but this flowstone needs {expected}; "
                f"run `flowstone db migrate --schema {schema}` or open the store with migrate=True"
            )
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry an operation that failed transiently.

    Delays grow from ``initial_delay`` by ``multiplier`` up to ``max_delay``, each with up
    to half of it as random jitter, until ``timeout`` seconds have passed since the first
    failure; then :class:`DatabaseUnavailableError` is raised.

    :param timeout: seconds to keep retrying (0 disables retries)
    """

    timeout: float = 30.0
    initial_delay: float = 0.05
    max_delay: float = 2.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.timeout < 0 or self.initial_delay <= 0 or self.max_delay <= 0:
            raise ConfigurationError(f"invalid {self!r}: times must be positive")
        if self.multiplier < 1:
            raise ConfigurationError(f"invalid {self!r}: multiplier must be at least 1")

    def delays(self) -> Iterator[float]:
        """The successive delays, jittered (endless)."""
        delay = self.initial_delay
        while True:
            yield delay / 2 + random.uniform(0, delay / 2)  # jitter, not cryptography
            delay = min(delay * self.multiplier, self.max_delay)


def describe(error: BaseException) -> str:
    """``"Type: message"`` of an error, with the SQLSTATE when the server sent one."""
    sqlstate = getattr(error, "sqlstate", None)
    state = f" [{sqlstate}]" if isinstance(sqlstate, str) else ""
    text = str(error) or repr(error)
    return f"{type(error).__name__}{state}: {text}"


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` means "try again later": connection lost or refused, server restarting."""
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = error.sqlstate or ""
        return sqlstate.startswith("08") or sqlstate in _TRANSIENT_SQLSTATES
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        # Outdated statement caches after DDL, and a protocol left out of step by a
        # connection the server ended while it was idle: a fresh connection fixes both.
        return True
    if isinstance(error, asyncpg.InterfaceError):
        text = str(error).lower()
        # "released back to the pool": a kept connection the pool took back after a failure
        return "connection" in text and any(w in text for w in ("closed", "lost", "released"))
    return isinstance(error, (OSError, TimeoutError, ConnectionError, EOFError))


def _is_driver_error(error: BaseException) -> bool:
    return isinstance(
        error,
        (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.exceptions.InternalClientError,
            OSError,
            TimeoutError,
            EOFError,
        ),
    )


@contextmanager
def map_errors(operation: str) -> Iterator[None]:
    """Translate driver errors raised inside the block into flowstone errors.

    Transient errors become :class:`DatabaseUnavailableError`, other driver errors
    :class:`~flowstone.StorageError`; the original is chained as ``__cause__``. Flowstone
    errors, cancellation and non-driver errors pass through unchanged.

    :param operation: what the block does, completing "could not ...", e.g.
        ``"load asset 'orders'"``
    """
    try:
        yield
    except FlowstoneError:
        raise
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        if is_transient(exc):
            raise DatabaseUnavailableError(operation, 0.0, 1, exc) from exc
        raise StorageError(f"could not {operation}: {describe(exc)}") from exc


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    first_contact: bool = False,
) -> T:
    """Await ``operation()``, retrying it after transient failures for a bounded time.

    Only use it for idempotent operations: an attempt may have taken effect on the server
    even though its answer was lost.

    :param operation: a fresh awaitable per call (it acquires its own connection)
    :param what: what it does, completing "could not ...", for messages and logs
    :param policy: the retry policy (default: :class:`RetryPolicy()`)
    :param first_contact: no server has answered yet: when none answers now either
        (refused, unknown host), fail at once, as a wrong address is more likely than an
        outage (a server that answers, say while it starts, is still retried)
    :return: the operation's result
    :raises DatabaseUnavailableError: still failing transiently when the time is up
    """
    policy = policy or _DEFAULT_POLICY
    first_failure: float | None = None
    attempts = 0
    delays: Iterator[float] | None = None
    while True:
        attempts += 1
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if first_contact and isinstance(exc, OSError):
                raise DatabaseUnavailableError(
                    f"{what} (never reached, so not retried)", 0.0, attempts, exc
                ) from exc
            now = time.monotonic()
            if first_failure is None:
                first_failure = now
                delays = policy.delays()
            waited = now - first_failure
            remaining = policy.timeout - waited
            if remaining <= 0:
                raise DatabaseUnavailableError(what, waited, attempts, exc) from exc
            assert delays is not None
            delay = min(next(delays), remaining)
            _log.warning(
                "could not %s (%s); retrying in %.2f s (attempt %d)",
                what,
                describe(exc),
                delay,
                attempts,
            )
            await anyio.sleep(delay)


_DEFAULT_POLICY = RetryPolicy()
