"""Partition mappings: which partitions of a dependency one partition of an asset reads.

By default a partitioned asset reads the same partition of each partitioned dependency
(identity). ``@fs.asset(deps_partitions={"orders": mapping})`` says otherwise for one
dependency:

* :class:`TimeWindowMapping`: every upstream window overlapping the downstream window
  (daily → weekly, hourly → daily, daily → monthly, and the reverse);
* :class:`LastN` (the last ``n`` partitions up to this one) and :class:`Offset` (the
  partition ``n`` places away: ``Offset(-1)`` is yesterday's);
* :class:`AllPartitions`: every partition (an unpartitioned asset reading them all);
* :class:`StaticMapping`: an explicit table of downstream key → upstream key(s);
* :class:`IdentityMapping`: the default, spelled out.

A mapping whose :attr:`~PartitionMapping.many` is true hands the asset a ``dict`` keyed by
upstream partition key, in partition order (never a list by position); one that is not
hands it the value itself. Custom mappings implement the :class:`PartitionMapping`
protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from .errors import DefinitionError, MissingInputError
from .partitions import PartitionsDefinition, TimeWindowPartitions

__all__ = [
    "AllPartitions",
    "IdentityMapping",
    "LastN",
    "MissingPartitionsError",
    "Offset",
    "PartitionMapping",
    "PartitionMappingError",
    "StaticMapping",
    "TimeWindowMapping",
]


_CACHE_SIZE = 4096  # upstream keys a TimeWindowMapping remembers


class PartitionMappingError(DefinitionError):
    """A partition mapping is malformed, or does not fit the partitionings it joins.

    :ivar asset: the downstream asset, when known
    :ivar dependency: the dependency the mapping is for, when known
    """

    def __init__(self, asset: str | None, dependency: str | None, reason: str) -> None:
        self.asset = asset
        self.dependency = dependency
        where = ""
        if asset is not None:
            where = f"asset {asset!r}"
            if dependency is not None:
                where += f", dependency {dependency!r}"
            where += ": "
        super().__init__(f"{where}{reason}")


class MissingPartitionsError(MissingInputError):
    """Upstream partitions that a mapping needs are not stored, or failed in the run.

    :ivar keys: the missing upstream partition keys, in partition order
    :ivar failed: whether they failed in this run (the first failure is the ``__cause__``)
    """

    def __init__(
        self,
        asset: str,
        dependency: str,
        partition: str | None,
        keys: Sequence[str],
        *,
        failed: bool = False,
    ) -> None:
        self.keys = tuple(keys)
        self.failed = failed
        shown = ", ".join(repr(k) for k in self.keys[:5])
        if len(self.keys) > 5:
            shown += f", … ({len(self.keys)} in all)"
        if failed:
            reason = f"partitions {shown} failed in this run"
        elif self.keys:
            reason = (
                f"partitions {shown} have no stored value; materialize them first, use "
                "with_deps=True, or make the mapping optional=True"
            )
        else:
            reason = "no partition of it maps to this one (make the mapping optional=True)"
        super().__init__(asset, dependency, partition, reason)


@runtime_checkable
class PartitionMapping(Protocol):
    """The protocol of a partition mapping, built-in or custom.

    :ivar many: whether the asset receives a ``dict`` of upstream key → value (true) or
        the single upstream value (false)
    :ivar optional: whether missing upstream partitions are left out instead of failing
    """

    @property
    def many(self) -> bool:
        """Whether the input is a ``dict`` keyed by upstream partition key."""
        ...

    @property
    def optional(self) -> bool:
        """Whether missing upstream partitions are skipped."""
        ...

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The upstream partition keys that downstream partition ``key`` reads, in order.

        :param key: the downstream partition (``None`` for an unpartitioned asset)
        :param downstream: the downstream asset's partitions
        :param upstream: the dependency's partitions
        :return: canonical upstream keys (``[None]`` for an unpartitioned dependency)
        """
        ...

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """Raise :class:`PartitionMappingError` if the mapping cannot join these two.

        Called when a :class:`~flowstone.Pipeline` is built.
        """
        ...


def _optional(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise PartitionMappingError(None, None, f"{name}(optional=...) must be a bool")
    return value


def _suffix(optional: bool) -> str:
    return ", optional=True" if optional else ""


class _MappingBase:
    """What every built-in mapping has: whether missing upstream partitions are skipped."""

    __slots__ = ("_optional",)

    def __init__(self, *, optional: bool = False) -> None:
        self._optional = _optional(optional, type(self).__name__)

    @property
    def optional(self) -> bool:
        """Whether missing upstream partitions are skipped."""
        return self._optional


class IdentityMapping(_MappingBase):
    """The default mapping: the same partition of the dependency (or its only value).

    :param optional: skip the input when that partition is missing
    """

    __slots__ = ()
    many = False

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """``[key]``, or ``[None]`` for an unpartitioned dependency; ``[]`` when ``key`` is
        not one of the dependency's partitions."""
        if upstream is None:
            return [None]
        if key is None or key not in upstream:
            return []
        return [key]

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """An unpartitioned asset cannot read one partition of a partitioned dependency."""
        if upstream is not None and downstream is None:
            raise PartitionMappingError(
                asset,
                dependency,
                "an unpartitioned asset cannot read a partitioned dependency by identity; "
                "use fs.AllPartitions()",
            )

    def __repr__(self) -> str:
        return f"IdentityMapping({_suffix(self._optional)[2:]})"


def _time_windows(
    mapping: str,
    downstream: PartitionsDefinition | None,
    upstream: PartitionsDefinition | None,
    asset: str,
    dependency: str,
) -> None:
    for side, definition in (("the asset", downstream), ("the dependency", upstream)):
        if not isinstance(definition, TimeWindowPartitions):
            raise PartitionMappingError(
                asset,
                dependency,
                f"{mapping} joins time-window partitions, but {side} has "
                f"{'no partitions' if definition is None else repr(definition)}",
            )


class TimeWindowMapping(_MappingBase):
    """Every upstream window that overlaps the downstream window.

    Daily → weekly reads the week's seven days, hourly → daily the day's hours (23 or
    25 across a clock change), daily → monthly the month's days, and the reverse
    (weekly → daily) the one week holding the day. Upstream windows outside the
    dependency's range are not read. The input is a ``dict`` keyed by upstream key.

    :param optional: skip missing upstream partitions instead of failing
    """

    __slots__ = ("_cache",)
    many = True

    def __init__(self, *, optional: bool = False) -> None:
        super().__init__(optional=optional)
        # (downstream, upstream, key, upstream's current end) -> keys: windows never move.
        self._cache: dict[tuple[object, ...], tuple[str, ...]] = {}

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The keys of the upstream windows overlapping the window of ``key``."""
        if not isinstance(downstream, TimeWindowPartitions) or not isinstance(
            upstream, TimeWindowPartitions
        ):
            raise PartitionMappingError(None, None, "TimeWindowMapping joins time windows")
        if key is None:
            return []
        cache_key = (downstream, upstream, key, upstream._stop())
        found = self._cache.get(cache_key)
        if found is None:
            start, end = downstream.window(key)
            found = tuple(overlapping_keys(upstream, start.astimezone(UTC), end.astimezone(UTC)))
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """Both sides must be time-window partitions."""
        _time_windows("TimeWindowMapping", downstream, upstream, asset, dependency)

    def __repr__(self) -> str:
        return f"TimeWindowMapping({_suffix(self._optional)[2:]})"


def overlapping_keys(upstream: TimeWindowPartitions, start: datetime, end: datetime) -> list[str]:
    """The keys of ``upstream`` whose windows overlap ``[start, end)`` (aware datetimes)."""
    wall = upstream._floor(upstream._to_wall(start))
    stop = upstream._stop()
    keys: list[str] = []
    instant = upstream._instant(wall)
    while instant < end and wall < stop:
        following = upstream._next(wall)
        following_instant = upstream._instant(following)
        if instant < following_instant and following_instant > start and wall >= upstream._start:
            keys.append(upstream._format(wall))
        wall, instant = following, following_instant
    return keys


class _Positional(_MappingBase):
    """Base of mappings that count partitions along the dependency's own keys."""

    __slots__ = ("_n",)
    name = ""

    def __init__(self, n: int, *, optional: bool = False) -> None:
        super().__init__(optional=optional)
        self._n = n

    @property
    def n(self) -> int:
        """The mapping's count or offset."""
        return self._n

    def _index(
        self, key: str | None, upstream: PartitionsDefinition | None
    ) -> tuple[int, list[str]]:
        if upstream is None or key is None or key not in upstream:
            return -1, []
        keys = list(upstream.keys())
        return keys.index(key), keys

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """Both sides must be partitioned, and the same way (keys of one are keys of the
        other)."""
        if downstream is None or upstream is None:
            raise PartitionMappingError(
                asset,
                dependency,
                f"{self.name} needs both the asset and the dependency partitioned",
            )
        if type(downstream) is not type(upstream) or (
            isinstance(downstream, TimeWindowPartitions)
            and isinstance(upstream, TimeWindowPartitions)
            and (downstream.timezone, downstream.fmt) != (upstream.timezone, upstream.fmt)
        ):
            raise PartitionMappingError(
                asset,
                dependency,
                f"{self.name} counts the dependency's partitions, so both must be "
                f"partitioned alike, not {downstream!r} and {upstream!r}",
            )

    def __repr__(self) -> str:
        return f"{self.name}({self._n}{_suffix(self._optional)})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Positional)
        return (self._n, self._optional) == (other._n, other._optional)

    def __hash__(self) -> int:
        return hash((type(self), self._n, self._optional))


class LastN(_Positional):
    """The last ``n`` partitions of the dependency up to this one, both included.

    ``LastN(7)`` on daily partitions is a rolling seven-day window; near the first
    partition it holds fewer. The input is a ``dict`` keyed by upstream key.

    :param n: how many partitions, at least 1
    :param optional: skip missing upstream partitions instead of failing
    :raises PartitionMappingError: ``n`` is not a positive int
    """

    __slots__ = ()
    name = "LastN"
    many = True

    def __init__(self, n: int, *, optional: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PartitionMappingError(None, None, f"LastN(n) needs n >= 1, not {n!r}")
        super().__init__(n, optional=optional)

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The ``n`` keys ending at ``key`` (fewer at the start of the partitions)."""
        index, keys = self._index(key, upstream)
        if index < 0:
            return []
        return keys[max(0, index - self._n + 1) : index + 1]


class Offset(_Positional):
    """The partition ``n`` places from this one: ``Offset(-1)`` is the previous one.

    The input is the upstream value itself. When no such partition exists (yesterday of
    the first day) the input is missing: an error, or the default with ``optional=True``.

    :param n: the offset, a non-zero int
    :param optional: skip the input when that partition does not exist or is missing
    :raises PartitionMappingError: ``n`` is not a non-zero int
    """

    __slots__ = ()
    name = "Offset"
    many = False

    def __init__(self, n: int, *, optional: bool = False) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n == 0:
            raise PartitionMappingError(
                None, None, f"Offset(n) needs a non-zero int (0 is the default identity), not {n!r}"
            )
        super().__init__(n, optional=optional)

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The key ``n`` places from ``key``, or none when it is out of range."""
        index, keys = self._index(key, upstream)
        target = index + self._n
        if index < 0 or not 0 <= target < len(keys):
            return []
        return [keys[target]]


class AllPartitions(_MappingBase):
    """Every partition of the dependency: an unpartitioned asset reading them all.

    The input is a ``dict`` keyed by upstream key, in partition order.

    :param optional: skip missing upstream partitions instead of failing
    """

    __slots__ = ()
    many = True

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """All of the dependency's keys."""
        return [] if upstream is None else list(upstream.keys())

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """The dependency must be partitioned."""
        if upstream is None:
            raise PartitionMappingError(
                asset, dependency, "AllPartitions reads a partitioned dependency; it has none"
            )

    def __repr__(self) -> str:
        return f"AllPartitions({_suffix(self._optional)[2:]})"


class StaticMapping(_MappingBase):
    """An explicit table: downstream key → the upstream key (or keys) it reads.

    With every value a single key the input is that upstream value; when any value is a
    list of keys, every input is a ``dict`` keyed by upstream key. A downstream key not in
    the table reads nothing (an error unless ``optional``).

    :param table: downstream key → upstream key or iterable of upstream keys
    :param optional: skip missing upstream partitions instead of failing
    :raises PartitionMappingError: the table is not a mapping of keys to key(s)
    """

    __slots__ = ("_many", "_table")

    def __init__(self, table: Mapping[str, str | Iterable[str]], *, optional: bool = False) -> None:
        if not isinstance(table, Mapping) or not table:
            raise PartitionMappingError(
                None, None, "StaticMapping takes a non-empty mapping of key -> key(s)"
            )
        converted: dict[str, tuple[str, ...]] = {}
        many = False
        for down, up in table.items():
            if not isinstance(down, str) or not down:
                raise PartitionMappingError(None, None, f"StaticMapping: bad key {down!r}")
            if isinstance(up, str):
                keys: tuple[str, ...] = (up,)
            elif isinstance(up, Iterable):
                keys = tuple(up)
                many = True
            else:
                raise PartitionMappingError(
                    None, None, f"StaticMapping: {down!r} maps to {up!r}, not a key or keys"
                )
            if not all(isinstance(k, str) and k for k in keys):
                raise PartitionMappingError(
                    None, None, f"StaticMapping: {down!r} maps to a key that is not a str"
                )
            converted[down] = tuple(dict.fromkeys(keys))
        self._table = converted
        self._many = many
        super().__init__(optional=optional)

    @property
    def many(self) -> bool:
        """Whether some key maps to several: the input is then a ``dict``."""
        return self._many

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The table's keys for ``key``, canonical, in the dependency's order."""
        if key is None or key not in self._table:
            return []
        wanted = self._table[key]
        if upstream is None:
            return list(wanted)
        canonical = {upstream.validate(k) for k in wanted}
        return [k for k in upstream.keys() if k in canonical]

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """Every key of the table must be a partition of its side."""
        if downstream is None or upstream is None:
            raise PartitionMappingError(
                asset,
                dependency,
                "StaticMapping needs both the asset and the dependency partitioned",
            )
        for down, ups in self._table.items():
            if down not in downstream:
                raise PartitionMappingError(
                    asset, dependency, f"StaticMapping key {down!r} is not a partition of the asset"
                )
            for up in ups:
                if up not in upstream:
                    raise PartitionMappingError(
                        asset,
                        dependency,
                        f"StaticMapping maps {down!r} to {up!r}, not a partition of the dependency",
                    )

    def __repr__(self) -> str:
        table = {
            k: v[0] if len(v) == 1 and not self._many else list(v) for k, v in self._table.items()
        }
        return f"StaticMapping({table!r}{_suffix(self._optional)})"
