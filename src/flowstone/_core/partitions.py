"""Partition definitions: which partition keys an asset has, and what each key means.

This module owns the :class:`PartitionsDefinition` protocol that custom partitionings
implement, the built-in :class:`StaticPartitions` and time-window partitions
(:class:`DailyPartitions`, :class:`HourlyPartitions`, :class:`MonthlyPartitions`, all
built on :class:`TimeWindowPartitions`), and :func:`partition_keys`, which turns a user's
``partitions=`` argument into a list of keys. Invalid keys raise
:class:`~flowstone._core.errors.PartitionError`.

Time windows are wall-clock windows in one time zone: a daily partition in
``Europe/Berlin`` runs from local midnight to the next local midnight, whatever its length
in hours. Wall-clock times that a daylight-saving change skips belong to no window, and a
window that lies wholly inside such a gap (the skipped hour of an hourly partitioning)
is not a partition at all. Repeated wall-clock times belong to the window whose wall-clock
span contains them, which is then longer than usual.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowstone._core.errors import PartitionError

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Iterator, Sequence

__all__ = [
    "DailyPartitions",
    "HourlyPartitions",
    "KeyedPartitions",
    "MonthlyPartitions",
    "PartitionsDefinition",
    "StaticPartitions",
    "TimeWindowPartitions",
    "partition_keys",
]

_MAX_SHOWN = 5  # keys listed in an error message


@runtime_checkable
class PartitionsDefinition(Protocol):
    """The protocol every partitioning implements, built-in or custom.

    Keys are non-empty strings. ``key in partitions`` is true exactly for the canonical
    keys that :meth:`keys` lists.
    """

    def keys(self) -> Sequence[str]:
        """Return all partition keys, in order.

        :return: the keys, oldest or first first
        :raises PartitionError: if the partitioning is unbounded and cannot list its keys
        """
        ...

    def validate(self, key: str, *, asset: str | None = None) -> str:
        """Check a partition key and return its canonical form.

        :param key: the key to check
        :param asset: the asset the key is for, named in the error
        :return: the canonical key
        :raises PartitionError: if the key is not a partition of this partitioning
        """
        ...

    def __contains__(self, key: object) -> bool:
        """Return whether ``key`` is one of the canonical keys."""
        ...


def _type_reason(key: object) -> str:
    return f"a partition key must be a str, not {type(key).__name__} ({key!r})"


def _shown(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_SHOWN])
    if len(keys) > _MAX_SHOWN:
        shown += f", … ({len(keys)} in all)"
    return shown


class KeyedPartitions:
    """Base of the partitionings that are a list of keys (static and dynamic ones): the
    keys in order, membership, and :meth:`validate` with a close match in its error."""

    __slots__ = ("_index", "_keys")
    _keys: tuple[str, ...]
    _index: Container[str]
    #: How the closest key is suggested after the reason a key is unknown.
    _suggestion: ClassVar[str] = "; did you mean {!r}?"

    def keys(self) -> tuple[str, ...]:
        """The keys, in order."""
        return self._keys

    def validate(self, key: str, *, asset: str | None = None) -> str:
        """Check that ``key`` is one of the keys.

        :param key: the key to check
        :param asset: the asset the key is for, named in the error
        :return: ``key`` itself
        :raises PartitionError: if ``key`` is not one of the keys
        """
        if not isinstance(key, str):
            raise PartitionError(asset, None, _type_reason(key))
        if key in self._index:
            return key
        reason = self._unknown(key)
        close = difflib.get_close_matches(key, self._keys, n=1)
        if close:
            reason += self._suggestion.format(close[0])
        raise PartitionError(asset, key, reason)

    def _unknown(self, key: str) -> str:
        """Why ``key`` is not a partition (the start of the error)."""
        raise NotImplementedError

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)


class StaticPartitions(KeyedPartitions):
    """A fixed set of partition keys, kept in the order given.

    :param keys: the keys: unique, non-empty strings, at least one
    :raises PartitionError: if there are no keys, a key is not a non-empty string, or a
        key is repeated
    """

    __slots__ = ()

    def __init__(self, keys: Iterable[str]) -> None:
        if isinstance(keys, str):
            raise PartitionError(
                None, keys, "StaticPartitions takes an iterable of keys, not a single string"
            )
        ordered: list[str] = []
        index: dict[str, int] = {}
        for key in keys:
            if not isinstance(key, str):
                raise PartitionError(None, None, _type_reason(key))
            if not key:
                raise PartitionError(None, key, "a partition key must not be empty")
            if key in index:
                raise PartitionError(None, key, "the key is given more than once")
            index[key] = len(ordered)
            ordered.append(key)
        if not ordered:
            raise PartitionError(None, None, "StaticPartitions needs at least one key")
        self._keys = tuple(ordered)
        self._index = index

    def _unknown(self, key: str) -> str:
        return f"not one of the {len(self._keys)} keys ({_shown(self._keys)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StaticPartitions):
            return NotImplemented
        return self._keys == other._keys

    def __hash__(self) -> int:
        return hash((StaticPartitions, self._keys))

    def __repr__(self) -> str:
        return f"StaticPartitions({list(self._keys)!r})"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TimeWindowPartitions(ABC):
    """Base of partitionings into consecutive wall-clock windows of one time zone.

    Keys are the windows' starts formatted with ``fmt``; they round-trip through
    :meth:`window` and :meth:`key_for`. Subclasses set :attr:`unit` and
    :attr:`default_fmt` and implement ``_floor`` (the start of the window holding a naive
    wall-clock time) and ``_next`` (the start of the following window).

    :param start: the start of the first window: a key, an ISO date or datetime string, a
        :class:`~datetime.date` or a :class:`~datetime.datetime`; naive values are wall-clock
        times in ``timezone``, aware ones are converted to it
    :param end: the exclusive end, in the same forms; ``None`` runs the keys up to the last
        window that is complete now
    :param timezone: an IANA time zone name, such as ``"Europe/Berlin"``
    :param fmt: the :meth:`~datetime.datetime.strftime` format of keys; it must round-trip
    :param now: returns the current time, for ``end=None`` (tests pass a fake clock)
    :raises PartitionError: if a bound is malformed or not the start of a window, ``end``
        is not after ``start``, the time zone is unknown, or ``fmt`` does not round-trip
    """

    unit: ClassVar[str]
    """The window's unit, used in messages: ``"day"``, ``"hour"``, ``"month"``."""
    default_fmt: ClassVar[str]
    """The key format used when ``fmt`` is not given."""

    __slots__ = ("_cache", "_end", "_fmt", "_now", "_start", "_timezone", "_tz")

    def __init__(
        self,
        start: str | date | datetime,
        end: str | date | datetime | None = None,
        timezone: str = "UTC",
        fmt: str | None = None,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        try:
            self._tz: tzinfo = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise PartitionError(None, None, f"unknown time zone {timezone!r}") from None
        self._timezone = timezone
        self._fmt = self.default_fmt if fmt is None else fmt
        self._now = now
        self._cache: tuple[datetime, tuple[str, ...]] | None = None
        reference = self._floor(datetime(2001, 11, 22, 13))
        self._check_fmt(reference, self._next(reference))
        self._start = self._bound(start, "start")
        self._end = None if end is None else self._bound(end, "end")
        self._check_fmt(self._start, self._next(self._start))
        if self._end is not None and self._end <= self._start:
            raise PartitionError(
                None,
                self._format(self._end),
                f"end must be after start {self._format(self._start)!r}",
            )

    # -- subclass hooks ------------------------------------------------------------------

    @abstractmethod
    def _floor(self, wall: datetime) -> datetime:
        """Return the start of the window holding the naive wall-clock time ``wall``."""

    @abstractmethod
    def _next(self, wall: datetime) -> datetime:
        """Return the start of the window after the one starting at ``wall``."""

    # -- public API ----------------------------------------------------------------------

    @property
    def start(self) -> datetime:
        """The start of the first window, aware, in the partitions' time zone."""
        return self._instant(self._start)

    @property
    def end(self) -> datetime | None:
        """The exclusive end, aware, or ``None`` when the keys run up to now."""
        return None if self._end is None else self._instant(self._end)

    @property
    def timezone(self) -> str:
        """The time zone's name."""
        return self._timezone

    @property
    def fmt(self) -> str:
        """The key format."""
        return self._fmt

    def keys(self) -> tuple[str, ...]:
        """Return every key from the first window up to the end, in time order.

        With ``end=None`` the last key is the last window that is complete now.

        :return: the keys
        """
        stop = self._stop()
        cached = self._cache
        if cached is not None and cached[0] == stop:
            return cached[1]
        keys = tuple(self._format(wall) for wall in self._walls(self._start, stop))
        self._cache = (stop, keys)
        return keys

    def validate(self, key: str, *, asset: str | None = None) -> str:
        """Check a key and return its canonical form.

        Keys that parse with ``fmt`` but are written differently (``"2025-1-2"``) are
        accepted and returned canonical (``"2025-01-02"``).

        :param key: the key to check
        :param asset: the asset the key is for, named in the error
        :return: the canonical key
        :raises PartitionError: if the key is malformed, not the start of a window, skipped
            by a clock change, before the first window, or at or after the end
        """
        return self._format(self._checked(key, asset))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            return self.validate(key) == key
        except PartitionError:
            return False

    def key_for(self, dt: datetime | date) -> str:
        """Return the key of the window that holds ``dt``.

        :param dt: an aware datetime, or a naive one or a date read as wall-clock time in
            the partitions' time zone
        :return: the key
        :raises PartitionError: if that window is not a partition (out of range, not
            complete yet, or skipped by a clock change)
        """
        wall = self._floor(self._to_wall(dt))
        return self.validate(self._format(wall))

    def window(self, key: str) -> tuple[datetime, datetime]:
        """Return the window of a key.

        :param key: a partition key
        :return: ``(start, end)``, aware datetimes in the partitions' time zone; the end
            is exclusive and is the next window's start. Python compares and subtracts
            datetimes of one time zone by wall clock, so across a clock change convert
            them with ``.astimezone(datetime.UTC)`` first
        :raises PartitionError: if the key is not valid
        """
        wall = self._checked(key, None)
        return self._instant(wall), self._instant(self._next(wall))

    def range(self, start_key: str, end_key: str, *, asset: str | None = None) -> list[str]:
        """Return the keys from ``start_key`` to ``end_key``, both included.

        Unlike the definition's ``end=`` (exclusive), ``end_key`` is a key of the range:
        ``range("2025-01-01", "2025-01-31")`` is the 31 days of January.

        :param start_key: the first key
        :param end_key: the last key
        :param asset: the asset the keys are for, named in errors
        :return: the keys in time order
        :raises PartitionError: if a key is not valid or ``end_key`` comes before
            ``start_key``
        """
        first = self._checked(start_key, asset)
        last = self._checked(end_key, asset)
        if last < first:
            raise PartitionError(
                asset, end_key, f"the range ends before its start {self._format(first)!r}"
            )
        return [self._format(wall) for wall in self._walls(first, self._next(last))]

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeWindowPartitions):
            return NotImplemented
        return type(self) is type(other) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((type(self), *self._identity()))

    def __repr__(self) -> str:
        end = None if self._end is None else self._format(self._end)
        text = f"{type(self).__name__}(start={self._format(self._start)!r}, end={end!r}"
        text += f", timezone={self._timezone!r}"
        if self._fmt != self.default_fmt:
            text += f", fmt={self._fmt!r}"
        return text + ")"

    # -- internals -----------------------------------------------------------------------

    def _identity(self) -> tuple[datetime, datetime | None, str, str]:
        return self._start, self._end, self._timezone, self._fmt

    def _format(self, wall: datetime) -> str:
        return wall.strftime(self._fmt)

    def _example(self) -> str:
        example = self._format(self._floor(datetime(2025, 1, 2, 5)))
        return f"a key like {example!r} (format {self._fmt!r})"

    def _to_wall(self, value: datetime | date) -> datetime:
        """Return ``value`` as a naive wall-clock time in the partitions' time zone."""
        if not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day)
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(self._tz).replace(tzinfo=None, fold=0)
        return value.replace(tzinfo=None, fold=0)

    def _bound(self, value: object, name: str) -> datetime:
        """Parse ``start`` or ``end`` into the naive wall-clock start of a window."""
        parsed: datetime | date
        if isinstance(value, str):
            try:
                parsed = datetime.strptime(value, self._fmt)
            except ValueError:
                try:
                    parsed = datetime.fromisoformat(value)
                except ValueError:
                    raise PartitionError(
                        None, value, f"{name} is neither {self._example()} nor an ISO date"
                    ) from None
        elif isinstance(value, date):
            parsed = value
        else:
            raise PartitionError(
                None, None, f"{name} must be a str, date or datetime, not {type(value).__name__}"
            )
        wall = self._to_wall(parsed)
        floor = self._floor(wall)
        if floor != wall:
            raise PartitionError(
                None,
                str(value),
                f"{name} is not the start of a {self.unit}; did you mean {self._format(floor)!r}?",
            )
        return wall

    def _check_fmt(self, *walls: datetime) -> None:
        """Raise unless ``fmt`` formats and parses back each of ``walls`` exactly."""
        for wall in walls:
            try:
                back = datetime.strptime(self._format(wall), self._fmt)
            except ValueError:
                back = None
            if back != wall:
                raise PartitionError(
                    None,
                    None,
                    f"fmt {self._fmt!r} does not round-trip {self.unit} windows "
                    f"({wall.isoformat()} becomes {self._format(wall)!r})",
                )

    def _stop(self) -> datetime:
        """Return the wall-clock start of the first window that is not a partition."""
        if self._end is not None:
            return self._end
        return self._floor(self._to_wall(self._now()))

    def _instant(self, wall: datetime) -> datetime:
        """Return the earliest instant whose wall-clock time is at or after ``wall``.

        That is ``wall`` itself, or its first occurrence when the clock repeats it. Inside
        a gap (clocks skip ``wall``) it is the instant the clocks jump.
        """
        tz = self._tz
        aware = wall.replace(tzinfo=tz, fold=0)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
            return aware
        # In a gap: fold=1 reads wall with the later offset (an instant before the jump),
        # fold=0 with the earlier (after it). Bisect on whole seconds between them.
        low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
        high = int(aware.timestamp())
        low, high = min(low, high), max(low, high)
        while high - low > 1:
            middle = (low + high) // 2
            if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, tz)

    def _is_empty(self, wall: datetime) -> bool:
        """Return whether the window starting at ``wall`` lies wholly in a clock gap."""
        return self._instant(wall) >= self._instant(self._next(wall))

    def _walls(self, first: datetime, stop: datetime) -> Iterator[datetime]:
        """Yield the starts of the non-empty windows from ``first`` up to ``stop``."""
        wall = first
        instant = self._instant(wall)
        while wall < stop:
            following = self._next(wall)
            following_instant = self._instant(following)
            if instant < following_instant:
                yield wall
            wall, instant = following, following_instant

    def _checked(self, key: object, asset: str | None) -> datetime:
        """Return the wall-clock start of a valid key's window, or raise."""
        if not isinstance(key, str):
            raise PartitionError(asset, None, _type_reason(key))
        try:
            wall = datetime.strptime(key, self._fmt)
        except ValueError:
            raise PartitionError(asset, key, f"malformed: expected {self._example()}") from None
        floor = self._floor(wall)
        if floor != wall:
            raise PartitionError(
                asset,
                key,
                f"not the start of a {self.unit}; did you mean {self._format(floor)!r}?",
            )
        if wall < self._start:
            raise PartitionError(
                asset, key, f"before the first partition {self._format(self._start)!r}"
            )
        if self._end is not None:
            if wall >= self._end:
                raise PartitionError(
                    asset,
                    key,
                    f"at or after the end {self._format(self._end)!r} (the end is exclusive)",
                )
        else:
            current = self._stop()
            if wall >= current:
                raise PartitionError(
                    asset,
                    key,
                    f"not complete yet (the current {self.unit} is {self._format(current)!r}, "
                    "and only complete windows are partitions)",
                )
        if self._is_empty(wall):
            raise PartitionError(
                asset,
                key,
                f"does not exist in time zone {self._timezone!r} (a clock change skips it)",
            )
        return wall


class DailyPartitions(TimeWindowPartitions):
    """One partition per calendar day, from local midnight to the next.

    Keys look like ``"2025-01-02"``. Arguments are those of :class:`TimeWindowPartitions`.
    """

    unit = "day"
    default_fmt = "%Y-%m-%d"
    __slots__ = ()

    def _floor(self, wall: datetime) -> datetime:
        return wall.replace(hour=0, minute=0, second=0, microsecond=0)

    def _next(self, wall: datetime) -> datetime:
        return wall + timedelta(days=1)


class HourlyPartitions(TimeWindowPartitions):
    """One partition per wall-clock hour.

    Keys look like ``"2025-01-02T05:00"``. An hour that a clock change skips is no
    partition; an hour that it repeats is one partition, two hours long. Arguments are
    those of :class:`TimeWindowPartitions`.
    """

    unit = "hour"
    default_fmt = "%Y-%m-%dT%H:%M"
    __slots__ = ()

    def _floor(self, wall: datetime) -> datetime:
        return wall.replace(minute=0, second=0, microsecond=0)

    def _next(self, wall: datetime) -> datetime:
        return wall + timedelta(hours=1)


class MonthlyPartitions(TimeWindowPartitions):
    """One partition per calendar month, from the first at local midnight to the next.

    Keys look like ``"2025-01"``. Arguments are those of :class:`TimeWindowPartitions`.
    """

    unit = "month"
    default_fmt = "%Y-%m"
    __slots__ = ()

    def _floor(self, wall: datetime) -> datetime:
        return wall.replace(day=1, hour=0, minute=0, second=0, microsecond=0)

    def _next(self, wall: datetime) -> datetime:
        year, month = divmod(wall.year * 12 + wall.month, 12)  # month is 0-based here
        return wall.replace(year=year, month=month + 1)


def partition_keys(spec: PartitionsDefinition | Iterable[str] | str) -> list[str]:
    """Turn a ``partitions=`` argument into a list of keys.

    :param spec: a partitioning (all its keys), one key, or an iterable of keys (repeats
        are dropped, the first occurrence keeps its place)
    :return: the keys, in order
    :raises PartitionError: if a key is not a non-empty string
    :raises TypeError: if ``spec`` is none of the accepted kinds
    """
    if isinstance(spec, str):
        if not spec:
            raise PartitionError(None, spec, "a partition key must not be empty")
        return [spec]
    if isinstance(spec, PartitionsDefinition):
        return list(spec.keys())
    try:
        items = iter(spec)
    except TypeError:
        raise TypeError(
            "partitions must be a partitions definition, a key or an iterable of keys, "
            f"not {type(spec).__name__}"
        ) from None
    keys: dict[str, None] = {}
    for key in items:
        if not isinstance(key, str):
            raise PartitionError(None, None, _type_reason(key))
        if not key:
            raise PartitionError(None, key, "a partition key must not be empty")
        keys[key] = None
    return list(keys)
