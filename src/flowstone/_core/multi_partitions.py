"""Multi-dimensional partitions: one partition per combination of several partitionings.

``MultiPartitions({"date": days, "region": fs.StaticPartitions(["eu", "us"])})`` has a
partition per (date, region), with keys like ``"2025-01-02|eu"``.

Key encoding (stable; stored keys keep it): the dimensions' keys in the order the
dimensions were given, joined by ``|``. Within each dimension's key, ``\\`` is written
``\\\\`` and ``|`` is written ``\\|``, so any key of any dimension round-trips:
:meth:`MultiPartitions.decode` splits at the ``|`` that are not escaped and undoes the
escapes. Keys without ``\\`` or ``|`` (dates, region codes) are written as they are.

:class:`MultiMapping` maps dimension by dimension (``MultiMapping({"date": fs.LastN(7)})``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .errors import PartitionError
from .partition_mappings import IdentityMapping, PartitionMapping, PartitionMappingError
from .partitions import PartitionsDefinition

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["MultiMapping", "MultiPartitions"]

SEPARATOR = "|"
_ESCAPE = "\\"


def _escape(key: str) -> str:
    return key.replace(_ESCAPE, _ESCAPE * 2).replace(SEPARATOR, _ESCAPE + SEPARATOR)


def _split(key: str) -> list[str] | None:
    """The unescaped parts of an encoded key, or ``None`` if an escape is malformed."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(key)
    for char in chars:
        if char == _ESCAPE:
            following = next(chars, None)
            if following not in (_ESCAPE, SEPARATOR):
                return None
            current.append(following)
        elif char == SEPARATOR:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


class MultiPartitions:
    """One partition per combination of the keys of several partitionings.

    :param dimensions: dimension name → its partitions, in key order (the first dimension
        varies slowest in :meth:`keys`)
    :raises PartitionError: there are no dimensions, a name is not a non-empty str, or a
        value is not a partitions definition
    """

    __slots__ = ("_dimensions", "_keys")

    def __init__(self, dimensions: Mapping[str, PartitionsDefinition]) -> None:
        if not isinstance(dimensions, Mapping) or not dimensions:
            raise PartitionError(
                None, None, "MultiPartitions takes a non-empty mapping of name -> partitions"
            )
        for name, definition in dimensions.items():
            if not isinstance(name, str) or not name:
                raise PartitionError(None, None, f"a dimension name must be a str, not {name!r}")
            if not isinstance(definition, PartitionsDefinition):
                raise PartitionError(
                    None, None, f"dimension {name!r} must be partitions, not {definition!r}"
                )
        self._dimensions: dict[str, PartitionsDefinition] = dict(dimensions)
        self._keys: tuple[tuple[tuple[str, ...], ...], tuple[str, ...]] | None = None

    @property
    def dimensions(self) -> Mapping[str, PartitionsDefinition]:
        """Dimension name → its partitions, in key order."""
        return dict(self._dimensions)

    def encode(self, parts: Mapping[str, str]) -> str:
        """The key of one combination (each dimension's key is not checked).

        :param parts: dimension name → that dimension's key, one for every dimension
        :raises PartitionError: a dimension is missing or unknown
        """
        if set(parts) != set(self._dimensions):
            raise PartitionError(
                None,
                None,
                f"a key needs exactly the dimensions {list(self._dimensions)}, not {list(parts)}",
            )
        return SEPARATOR.join(_escape(parts[name]) for name in self._dimensions)

    def decode(self, key: str, *, asset: str | None = None) -> dict[str, str]:
        """The dimensions' keys of ``key``: ``{"date": "2025-01-02", "region": "eu"}``.

        :raises PartitionError: ``key`` is not an encoded key of as many dimensions
        """
        if not isinstance(key, str):
            raise PartitionError(asset, None, f"a partition key must be a str, not {key!r}")
        parts = _split(key)
        if parts is None or len(parts) != len(self._dimensions):
            raise PartitionError(
                asset,
                key,
                f"not a key of {len(self._dimensions)} dimensions "
                f"({SEPARATOR.join(self._dimensions)}), such as {self._example()!r}",
            )
        return dict(zip(self._dimensions, parts, strict=True))

    def keys(self, **subset: str | Iterable[str]) -> tuple[str, ...]:
        """Every key (the first dimension varying slowest), or those of a subset.

        ``multi.keys(date=days.range("2025-01-01", "2025-01-07"), region=["eu"])`` is
        the keys of seven days in ``eu``; a dimension not given takes all its keys.

        :param subset: dimension name → one key or keys of that dimension
        :raises PartitionError: a dimension is unknown or a key is not one of its keys
        """
        unknown = set(subset) - set(self._dimensions)
        if unknown:
            raise PartitionError(
                None, None, f"unknown dimensions {sorted(unknown)}; use {list(self._dimensions)}"
            )
        axes: list[Sequence[str]] = []
        for name, definition in self._dimensions.items():
            if name not in subset:
                axes.append(definition.keys())
                continue
            chosen = subset[name]
            given = [chosen] if isinstance(chosen, str) else list(chosen)
            axes.append(list(dict.fromkeys(definition.validate(k) for k in given)))
        if not subset:
            cached = self._keys
            shape = tuple(tuple(axis) for axis in axes)
            if cached is not None and cached[0] == shape:
                return cached[1]
            keys = self._product(axes)
            self._keys = (shape, keys)
            return keys
        return self._product(axes)

    def _product(self, axes: Sequence[Sequence[str]]) -> tuple[str, ...]:
        escaped = [[_escape(k) for k in axis] for axis in axes]
        return tuple(SEPARATOR.join(combo) for combo in itertools.product(*escaped))

    def validate(self, key: str, *, asset: str | None = None) -> str:
        """Check each dimension's key and return the canonical key.

        :raises PartitionError: the key is malformed or a dimension rejects its part
        """
        parts = self.decode(key, asset=asset)
        canonical: dict[str, str] = {}
        for name, part in parts.items():
            try:
                canonical[name] = self._dimensions[name].validate(part, asset=asset)
            except PartitionError as exc:
                raise PartitionError(asset, key, f"dimension {name!r}: {exc.reason}") from None
        return self.encode(canonical)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            return self.validate(key) == key
        except PartitionError:
            return False

    def __len__(self) -> int:
        return len(self.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MultiPartitions):
            return NotImplemented
        return list(self._dimensions.items()) == list(other._dimensions.items())

    def __hash__(self) -> int:
        return hash((MultiPartitions, tuple(self._dimensions)))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: {d!r}" for n, d in self._dimensions.items())
        return f"MultiPartitions({{{inner}}})"

    def _example(self) -> str:
        parts = []
        for definition in self._dimensions.values():
            try:
                keys = definition.keys()
            except PartitionError:
                keys = ()
            parts.append(_escape(keys[0]) if keys else "…")
        return SEPARATOR.join(parts)


class MultiMapping:
    """A partition mapping applied dimension by dimension.

    * between two :class:`MultiPartitions` with the same dimensions, each dimension maps
      with its mapping (the identity when not given): ``MultiMapping({"date": LastN(7)})``
      reads the last seven days of the same region;
    * from a multi-partitioned asset to a dependency with one partitioning, the one
      dimension given maps to it: ``MultiMapping({"date": IdentityMapping()})`` reads a
      daily dependency's day;
    * from an asset with one partitioning to a multi-partitioned dependency, every
      dimension needs a mapping: ``MultiMapping({"date": IdentityMapping(), "region":
      AllPartitions()})`` reads the day in every region.

    The input is a ``dict`` keyed by upstream key when a dimension's mapping reads many.

    :param dimensions: dimension name → the mapping of that dimension
    :param optional: skip missing upstream partitions instead of failing
    :raises PartitionMappingError: ``dimensions`` is not a non-empty mapping of mappings
    """

    __slots__ = ("_dimensions", "_optional")

    def __init__(
        self, dimensions: Mapping[str, PartitionMapping], *, optional: bool = False
    ) -> None:
        if not isinstance(dimensions, Mapping) or not dimensions:
            raise PartitionMappingError(
                None, None, "MultiMapping takes a non-empty mapping of dimension -> mapping"
            )
        for name, mapping in dimensions.items():
            if not isinstance(mapping, PartitionMapping):
                raise PartitionMappingError(
                    None, None, f"MultiMapping: dimension {name!r} maps with {mapping!r}"
                )
        if not isinstance(optional, bool):
            raise PartitionMappingError(None, None, "MultiMapping(optional=...) must be a bool")
        self._dimensions = dict(dimensions)
        self._optional = optional

    @property
    def many(self) -> bool:
        """Whether a dimension's mapping reads many partitions."""
        return any(m.many for m in self._dimensions.values())

    @property
    def optional(self) -> bool:
        """Whether missing upstream partitions are skipped."""
        return self._optional

    def _mapping(self, name: str) -> PartitionMapping:
        return self._dimensions.get(name) or IdentityMapping()

    def upstream_keys(
        self,
        key: str | None,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
    ) -> Sequence[str | None]:
        """The upstream keys, dimension by dimension (see the class)."""
        if key is None or downstream is None or upstream is None:
            return []
        if isinstance(upstream, MultiPartitions):
            down_parts = downstream.decode(key) if isinstance(downstream, MultiPartitions) else None
            axes: list[list[str]] = []
            for name, dimension in upstream.dimensions.items():
                if down_parts is not None:
                    down_def = downstream.dimensions[name]  # type: ignore[attr-defined]
                    down_key = down_parts[name]
                else:
                    down_def, down_key = downstream, key
                found = self._mapping(name).upstream_keys(down_key, down_def, dimension)
                axes.append([k for k in found if k is not None])
            return [
                upstream.encode(dict(zip(upstream.dimensions, c, strict=True)))
                for c in itertools.product(*axes)
            ]
        if not isinstance(downstream, MultiPartitions):
            return []
        ((name, mapping),) = self._dimensions.items()
        parts = downstream.decode(key)
        return mapping.upstream_keys(parts[name], downstream.dimensions[name], upstream)

    def check(
        self,
        downstream: PartitionsDefinition | None,
        upstream: PartitionsDefinition | None,
        *,
        asset: str,
        dependency: str,
    ) -> None:
        """Check the dimensions and each dimension's mapping (see the class)."""
        down_multi = isinstance(downstream, MultiPartitions)
        if isinstance(upstream, MultiPartitions):
            names = list(upstream.dimensions)
            unknown = set(self._dimensions) - set(names)
            if unknown:
                raise PartitionMappingError(
                    asset, dependency, f"MultiMapping names unknown dimensions {sorted(unknown)}"
                )
            if down_multi:
                assert isinstance(downstream, MultiPartitions)
                if list(downstream.dimensions) != names:
                    raise PartitionMappingError(
                        asset,
                        dependency,
                        f"MultiMapping joins the same dimensions; the asset has "
                        f"{list(downstream.dimensions)}, the dependency {names}",
                    )
            else:
                lacking = [n for n in names if n not in self._dimensions]
                if lacking:
                    raise PartitionMappingError(
                        asset,
                        dependency,
                        f"MultiMapping needs a mapping for every dimension of the "
                        f"dependency; {lacking} have none",
                    )
            for name in names:
                down_def = downstream.dimensions[name] if down_multi else downstream  # type: ignore[union-attr]
                self._mapping(name).check(
                    down_def, upstream.dimensions[name], asset=asset, dependency=dependency
                )
            return
        if not down_multi or len(self._dimensions) != 1:
            raise PartitionMappingError(
                asset,
                dependency,
                "MultiMapping reads a multi-partitioned dependency, or maps one dimension "
                "of a multi-partitioned asset to the dependency's partitions",
            )
        assert isinstance(downstream, MultiPartitions)
        ((name, mapping),) = self._dimensions.items()
        if name not in downstream.dimensions:
            raise PartitionMappingError(asset, dependency, f"the asset has no dimension {name!r}")
        mapping.check(downstream.dimensions[name], upstream, asset=asset, dependency=dependency)

    def __repr__(self) -> str:
        optional = ", optional=True" if self._optional else ""
        return f"MultiMapping({self._dimensions!r}{optional})"
