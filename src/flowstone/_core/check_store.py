"""Where check results are kept: the :class:`CheckStore` protocol and its memory version.

A materialization store that also implements :class:`CheckStore` (``PostgresStore`` does)
keeps check results beside its records, durably; with any other store a runtime keeps
them in a :class:`MemoryCheckStore` of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .checks import CheckRecord

__all__ = ["CheckStore", "MemoryCheckStore"]


@runtime_checkable
class CheckStore(Protocol):
    """Keeps the results of asset checks (an optional capability of a store).

    Contract: ``save_check`` appends (a value checked again gets a second record);
    ``check_history`` returns the records of an asset, newest first, filtered by partition
    and check name when given. Implementations are safe under concurrent use.
    """

    async def save_check(self, record: CheckRecord) -> None:
        """Append one check result."""
        ...

    async def check_history(
        self,
        asset: str,
        partition: str | None = None,
        *,
        check: str | None = None,
        limit: int = 100,
    ) -> list[CheckRecord]:
        """Check results of ``asset`` (one partition, or all when ``None``), newest first."""
        ...


class MemoryCheckStore:
    """Check results in memory, in the order they were saved."""

    def __init__(self) -> None:
        self._records: dict[str, list[CheckRecord]] = {}

    async def save_check(self, record: CheckRecord) -> None:
        """Append one check result."""
        self._records.setdefault(record.asset, []).append(record)

    async def check_history(
        self,
        asset: str,
        partition: str | None = None,
        *,
        check: str | None = None,
        limit: int = 100,
    ) -> list[CheckRecord]:
        """Check results of ``asset``, newest first."""
        found: list[CheckRecord] = []
        for record in reversed(self._records.get(asset, ())):
            if partition is not None and record.partition != partition:
                continue
            if check is not None and record.check != check:
                continue
            found.append(record)
            if len(found) >= limit:
                break
        return found

    def __repr__(self) -> str:
        return f"MemoryCheckStore({sum(map(len, self._records.values()))} results)"
