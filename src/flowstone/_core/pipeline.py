"""Pipelines: a validated set of assets, their graph, selection and display."""

from __future__ import annotations

import difflib
import html
import inspect
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, cast

from .assets import AssetDef
from .checks import CheckDef, InvalidCheckError
from .dependency_mappings import check_pipeline_mappings
from .errors import (
    ConfigurationError,
    CycleError,
    DefinitionError,
    DuplicateAssetError,
    SelectionError,
    UnknownDependencyError,
)

__all__ = ["AssetsLike", "Pipeline", "Selection", "as_pipeline"]


def _suggest(name: str, names: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _assets_of_module(module: types.ModuleType) -> list[AssetDef[..., Any] | CheckDef]:
    return [
        value for _, value in inspect.getmembers(module) if isinstance(value, AssetDef | CheckDef)
    ]


_NO_CHECKS: tuple[CheckDef, ...] = ()


class Pipeline:
    """A validated set of assets, and the checks of their values.

    Construction checks the graph: unknown dependencies, duplicate names and cycles raise
    typed errors, and each asset kind validates itself against the whole pipeline. A check
    (``@fs.check``) joins the pipeline beside its asset: given in the list, or found at the
    top level of a module given.

    :param assets: assets and checks, or modules whose module-level assets and checks are
        taken
    :param name: a name for runs and display
    :raises UnknownDependencyError: an asset depends on a name no asset has
    :raises DuplicateAssetError: two different assets share a name
    :raises CycleError: the dependencies form a cycle
    :raises DefinitionError: something given is not an asset or a module
    :raises InvalidCheckError: a check names no asset of the pipeline, or two different
        checks of one asset share a name
    """

    def __init__(
        self,
        assets: Iterable[AssetDef[..., Any] | CheckDef | types.ModuleType]
        | AssetDef[..., Any]
        | types.ModuleType,
        *,
        name: str | None = None,
    ) -> None:
        items: Iterable[AssetDef[..., Any] | CheckDef | types.ModuleType]
        given: object = assets
        if isinstance(assets, AssetDef | types.ModuleType):
            items = [assets]
        elif isinstance(given, str | bytes) or not isinstance(given, Iterable):
            raise DefinitionError(
                f"Pipeline takes assets, modules or a list of them, not {_shown(assets)}"
            )
        else:
            items = cast("Iterable[AssetDef[..., Any] | CheckDef | types.ModuleType]", assets)
        if name is not None and (not isinstance(name, str) or not name):
            raise DefinitionError(f"Pipeline(name=...) must be a non-empty str, not {_shown(name)}")
        by_name: dict[str, AssetDef[..., Any]] = {}
        checks: list[CheckDef] = []
        for item in items:
            defs = _assets_of_module(item) if isinstance(item, types.ModuleType) else [item]
            for asset_def in defs:
                if isinstance(asset_def, CheckDef):
                    checks.append(asset_def)
                    continue
                if not isinstance(asset_def, AssetDef):
                    raise DefinitionError(
                        f"Pipeline takes assets (made with @fs.asset) or modules, "
                        f"got {_shown(asset_def)}"
                    )
                existing = by_name.get(asset_def.name)
                if existing is not None and existing is not asset_def:
                    raise DuplicateAssetError(asset_def.name)
                by_name[asset_def.name] = asset_def
        self.name = name
        self._assets = by_name
        self._downstream: dict[str, list[str]] = {n: [] for n in by_name}
        for asset_def in by_name.values():
            for dep in asset_def.deps:
                if dep not in by_name:
                    if dep in asset_def.optional:
                        continue
                    raise UnknownDependencyError(asset_def.name, dep, _suggest(dep, by_name))
                self._downstream[dep].append(asset_def.name)
        self._checks = self._collect_checks(checks)
        self._order = self._toposort()
        self._index = {n: i for i, n in enumerate(self._order)}
        self._ordered = MappingProxyType({n: self._assets[n] for n in self._order})
        #: Whether some asset reads a dependency through a partition mapping.
        self.has_partition_mappings = any(a.partition_mappings for a in by_name.values())
        for asset_def in by_name.values():
            if asset_def.kind_spec is not None:
                asset_def.kind_spec.validate(asset_def, self)
        check_pipeline_mappings(self)

    def _collect_checks(self, checks: list[CheckDef]) -> dict[str, tuple[CheckDef, ...]]:
        """The checks by asset, each validated against the pipeline's assets."""
        by_asset: dict[str, dict[str, CheckDef]] = {}
        for check_def in checks:
            if check_def.asset not in self._assets:
                hint = _suggest(check_def.asset, self._assets)
                raise InvalidCheckError(
                    check_def.name,
                    f"asset={check_def.asset!r} names no asset of the pipeline"
                    + (f"; did you mean {hint!r}?" if hint else ""),
                )
            same = by_asset.setdefault(check_def.asset, {})
            existing = same.get(check_def.name)
            if existing is not None and existing is not check_def:
                raise InvalidCheckError(
                    check_def.name,
                    f"two different checks of asset {check_def.asset!r} share this name",
                )
            same[check_def.name] = check_def
        return {asset: tuple(named.values()) for asset, named in by_asset.items()}

    @property
    def checks(self) -> tuple[CheckDef, ...]:
        """Every check of the pipeline."""
        return tuple(c for each in self._checks.values() for c in each)

    def checks_of(self, name: str) -> tuple[CheckDef, ...]:
        """The checks of asset ``name`` (none when it has none)."""
        return self._checks.get(name, _NO_CHECKS)

    @classmethod
    def from_module(cls, module: types.ModuleType, *, name: str | None = None) -> Pipeline:
        """A pipeline of every asset defined at the top level of ``module``."""
        return cls([module], name=name or module.__name__)

    # -- graph -----------------------------------------------------------------------

    def _toposort(self) -> list[str]:
        """Kahn's algorithm, ties broken by definition order; a cycle is reported as a path."""
        indegree = dict.fromkeys(self._assets, 0)
        for asset_def in self._assets.values():
            indegree[asset_def.name] = sum(1 for d in asset_def.deps if d in self._assets)
        ready = [n for n, d in indegree.items() if d == 0]
        order: list[str] = []
        while ready:
            node = ready.pop(0) if len(ready) < 64 else ready.pop()
            order.append(node)
            for child in self._downstream[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    ready.append(child)
        if len(order) != len(self._assets):
            raise CycleError(self._find_cycle({n for n, d in indegree.items() if d > 0}))
        return order

    def _find_cycle(self, nodes: set[str]) -> list[str]:
        start = min(nodes)
        path: list[str] = []
        seen: dict[str, int] = {}
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(d for d in sorted(self._assets[node].deps) if d in nodes)
        flow = path[seen[node] :][::-1]  # producers before consumers
        return [*flow, flow[0]]

    @property
    def assets(self) -> Mapping[str, AssetDef[..., Any]]:
        """The assets by name, in dependency order (a read-only view)."""
        return self._ordered

    @property
    def order(self) -> tuple[str, ...]:
        """Asset names in a dependency-respecting order."""
        return tuple(self._order)

    def __getitem__(self, name: str) -> AssetDef[..., Any]:
        """The asset named ``name``.

        :raises SelectionError: no such asset (with a did-you-mean suggestion)
        """
        try:
            return self._assets[name]
        except KeyError:
            raise SelectionError(name, list(self._assets), _suggest(name, self._assets)) from None

    def __contains__(self, name: object) -> bool:
        if isinstance(name, AssetDef):
            return self._assets.get(name.name) is name
        return name in self._assets

    def __iter__(self) -> Iterator[AssetDef[..., Any]]:
        return (self._assets[n] for n in self._order)

    def __len__(self) -> int:
        return len(self._assets)

    def info(self, name: str) -> dict[str, Any]:
        """A summary of one asset: kind, inputs, upstream, downstream, options."""
        asset_def = self[name]
        return {
            "name": asset_def.name,
            "kind": asset_def.kind,
            "description": asset_def.description,
            "inputs": dict(asset_def.inputs),
            "deps": list(asset_def.deps),
            "optional_deps": sorted(asset_def.optional),
            "downstream": list(self._downstream[name]),
            "partitions": None if asset_def.partitions is None else repr(asset_def.partitions),
            "deps_partitions": {d: repr(m) for d, m in asset_def.partition_mappings.items()},
            "io_manager": asset_def.io_manager,
            "retry_attempts": asset_def.retry.attempts,
            "timeout": asset_def.timeout,
            "code_version": asset_def.code_version,
            "tags": dict(asset_def.tags),
            "metadata": dict(asset_def.metadata),
            "checks": [c.name for c in self.checks_of(name)],
        }

    def resolve(self, select: Any) -> list[str]:
        """Asset names from a selection: ``None`` (all), a name, an asset, or several.

        :raises SelectionError: a name is not in the pipeline
        :raises ConfigurationError: ``select`` is neither names nor assets
        """
        if select is None:
            return list(self._order)
        if isinstance(select, str | AssetDef):
            items = [select]
        elif isinstance(select, bytes) or not isinstance(select, Iterable):
            raise ConfigurationError(
                f"select= takes asset names or assets (or a list of them), not {_shown(select)}"
            )
        else:
            items = list(select)
        names: list[str] = []
        assets = self._assets
        for item in items:
            if type(item) is str and item in assets:  # (the common case, checked at once)
                names.append(item)
                continue
            name = item.name if isinstance(item, AssetDef) else item
            if not isinstance(name, str):
                raise ConfigurationError(f"select= takes asset names or assets, got {_shown(item)}")
            self[name]  # raises SelectionError with a suggestion
            names.append(name)
        return list(dict.fromkeys(names))

    def upstream(
        self, select: Any, *, include_self: bool = False, scheduled_only: bool = False
    ) -> list[str]:
        """Everything the selected assets depend on, in dependency order.

        :param include_self: also list the selected assets themselves (after their
            upstream); a selected asset upstream of another selected one is listed anyway
        :param scheduled_only: follow only the dependencies a run schedules first (not the
            ones a coordinator materializes itself)
        """
        wanted: set[str] = set()
        stack = self.resolve(select)
        if include_self:
            wanted.update(stack)
            if len(wanted) == len(self._assets):  # every asset: nothing more to find
                return list(self._order)
        seen: set[str] = set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            asset_def = self._assets[node]
            for dep in asset_def.scheduled_deps if scheduled_only else asset_def.deps:
                if dep in self._assets and dep not in wanted:
                    wanted.add(dep)
                    stack.append(dep)
        return sorted(wanted, key=self._index.__getitem__)

    def downstream(self, select: Any, *, include_self: bool = False) -> list[str]:
        """Everything that depends on the selected assets, in dependency order.

        :param include_self: also list the selected assets themselves (before their
            downstream); a selected asset downstream of another selected one is listed anyway
        """
        start = self.resolve(select)
        wanted: set[str] = set(start) if include_self else set()
        stack = list(start)
        while stack:
            for child in self._downstream[stack.pop()]:
                if child not in wanted:
                    wanted.add(child)
                    stack.append(child)
        return sorted(wanted, key=self._index.__getitem__)

    def children(self, name: str) -> Sequence[str]:
        """Assets that depend directly on ``name``."""
        return tuple(self._downstream[self[name].name])

    def subset(self, select: Any, *, with_deps: bool = True, name: str | None = None) -> Pipeline:
        """A pipeline of the selected assets (and their upstream, by default)."""
        names = self.upstream(select, include_self=True) if with_deps else self.resolve(select)
        kept: list[AssetDef[..., Any] | CheckDef] = [self._assets[n] for n in names]
        kept.extend(c for n in names for c in self.checks_of(n))
        return Pipeline(kept, name=name or self.name)

    # -- display ---------------------------------------------------------------------

    def _edges(self) -> Iterator[tuple[str, str, str]]:
        for name in self._order:
            asset_def = self._assets[name]
            spec = asset_def.kind_spec
            owned = set(spec.owned_deps()) if spec is not None else set()
            for dep in asset_def.deps:
                if dep not in self._assets:
                    continue
                style = spec.edge_style(dep) if spec is not None else "solid"
                if dep in owned:
                    style = "branch"
                elif dep in asset_def.optional and style == "solid":
                    style = "optional"
                yield dep, name, style

    def _mapping_label(self, asset: str, dep: str) -> str | None:
        mapping = self._assets[asset].partition_mappings.get(dep)
        return None if mapping is None else repr(mapping)

    def graph(self, format: str = "text") -> str:
        """The graph as text: ``"mermaid"``, ``"dot"`` or ``"text"``.

        Routed and optional edges are dashed; parallel branches are dotted. An edge read
        through a partition mapping is labelled with it (``TimeWindowMapping()``).
        """
        if format == "mermaid":
            lines = ["graph TD"]
            ids = {n: f"n{i}" for i, n in enumerate(self._order)}
            for name in self._order:
                kind = self._assets[name].kind
                label = name if kind == "asset" else f"{name}<br/><i>{kind}</i>"
                lines.append(f'    {ids[name]}["{label}"]')
            arrows = {"solid": "-->", "dashed": "-.->", "optional": "-.->", "branch": "==>"}
            for src, dst, style in self._edges():
                mapped = self._mapping_label(dst, src)
                shown = "" if mapped is None else f'|"{mapped.replace(chr(34), "#quot;")}"|'
                lines.append(f"    {ids[src]} {arrows.get(style, '-->')}{shown} {ids[dst]}")
            return "\n".join(lines)
        if format == "dot":
            title = (self.name or "pipeline").replace('"', "'")
            lines = [f'digraph "{title}" {{', "    rankdir=LR;", "    node [shape=box];"]
            for name in self._order:
                kind = self._assets[name].kind
                label = name if kind == "asset" else f"{name}\\n({kind})"
                lines.append(f'    "{name}" [label="{label}"];')
            styles = {"dashed": "dashed", "optional": "dashed", "branch": "bold"}
            for src, dst, style in self._edges():
                attrs = [f"style={styles[style]}"] if style in styles else []
                mapped = self._mapping_label(dst, src)
                if mapped is not None:
                    attrs.append('label="' + mapped.replace('"', "'") + '"')
                attr = f" [{', '.join(attrs)}]" if attrs else ""
                lines.append(f'    "{src}" -> "{dst}"{attr};')
            lines.append("}")
            return "\n".join(lines)
        if format == "text":
            incoming: dict[str, list[str]] = {n: [] for n in self._order}
            marks = {
                "solid": "",
                "dashed": " (routed)",
                "optional": " (optional)",
                "branch": " (branch)",
            }
            for src, dst, style in self._edges():
                mapped = self._mapping_label(dst, src)
                shown = "" if mapped is None else f" [{mapped}]"
                incoming[dst].append(src + marks.get(style, "") + shown)
            lines = []
            for name in self._order:
                kind = self._assets[name].kind
                head = name if kind == "asset" else f"{name} [{kind}]"
                lines.append(f"{head} <- {', '.join(incoming[name])}" if incoming[name] else head)
            return "\n".join(lines)
        raise ValueError(f"unknown graph format {format!r}; use 'mermaid', 'dot' or 'text'")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {
            "text/plain": repr(self),
            "text/markdown": f"```mermaid\n{self.graph('mermaid')}\n```",
            "text/html": self._repr_html_(),
        }

    def _repr_html_(self) -> str:
        title = html.escape(self.name or "Pipeline")
        body = html.escape(self.graph("mermaid"))
        return f'<div><b>{title}</b> ({len(self)} assets)<pre class="mermaid">{body}</pre></div>'

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return f"<Pipeline {name}{len(self)} assets: {', '.join(self._order[:8])}{'…' if len(self) > 8 else ''}>"


def as_pipeline(assets: Any) -> Pipeline:
    """A pipeline from what ``materialize`` accepts: a pipeline, assets or modules."""
    if isinstance(assets, Pipeline):
        return assets
    return Pipeline(assets)


#: What ``materialize`` accepts as its assets: a pipeline, assets, or modules of assets.
AssetsLike = (
    Pipeline
    | AssetDef[..., Any]
    | types.ModuleType
    | Iterable[AssetDef[..., Any] | CheckDef | types.ModuleType]
)
#: What ``select=`` accepts: ``None`` (everything), a name, an asset, or several.
Selection = str | AssetDef[..., Any] | Iterable[str | AssetDef[..., Any]] | None
