"""Pipelines: validation, ordering, selection, display."""

from __future__ import annotations

import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowstone as fs


def _asset(name: str, deps: list[str]) -> fs.AssetDef[..., int]:
    async def fn() -> int:
        return 1

    return fs.asset(name=name, deps=deps)(fn)


@fs.asset
async def numbers() -> list[int]:
    return [1, 2, 3]


@fs.asset
def doubled(numbers: list[int]) -> list[int]:
    return [n * 2 for n in numbers]


@fs.asset
async def total(doubled: list[int]) -> int:
    return sum(doubled)


def test_unknown_dependency_with_suggestion() -> None:
    @fs.asset
    async def bad(doubld: list[int]) -> int:
        return 0

    with pytest.raises(fs.UnknownDependencyError, match="did you mean 'doubled'") as info:
        fs.Pipeline([numbers, doubled, bad])
    assert info.value.asset == "bad" and info.value.dependency == "doubld"
    assert isinstance(info.value, fs.DefinitionError)


def test_duplicate_names() -> None:
    other = _asset("numbers", [])
    with pytest.raises(fs.DuplicateAssetError, match="'numbers'"):
        fs.Pipeline([numbers, other])
    # the same object twice is fine
    assert len(fs.Pipeline([numbers, numbers])) == 1


def test_cycle_names_its_path() -> None:
    a, b, c = _asset("a", ["c"]), _asset("b", ["a"]), _asset("c", ["b"])
    with pytest.raises(fs.CycleError) as info:
        fs.Pipeline([a, b, c, _asset("d", [])])
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert "->" in str(info.value)


def test_select_unknown_suggests() -> None:
    pipeline = fs.Pipeline([numbers, doubled, total])
    with pytest.raises(fs.SelectionError, match="did you mean 'total'"):
        pipeline.resolve("totl")
    with pytest.raises(LookupError):
        pipeline["nope"]


def test_upstream_downstream_and_info() -> None:
    pipeline = fs.Pipeline([total, doubled, numbers], name="p")
    assert pipeline.order == ("numbers", "doubled", "total")
    assert pipeline.upstream("total") == ["numbers", "doubled"]
    assert pipeline.upstream("total", include_self=True) == ["numbers", "doubled", "total"]
    assert pipeline.upstream("numbers") == []
    assert pipeline.upstream(["doubled", "total"]) == ["numbers", "doubled"]
    assert pipeline.downstream("numbers") == ["doubled", "total"]
    assert pipeline.downstream("numbers", include_self=True) == ["numbers", "doubled", "total"]
    assert pipeline.info("doubled")["downstream"] == ["total"]
    assert list(pipeline.subset("doubled").assets) == ["numbers", "doubled"]


def test_from_module() -> None:
    module = types.ModuleType("m")
    module.numbers = numbers  # type: ignore[attr-defined]
    module.doubled = doubled  # type: ignore[attr-defined]
    pipeline = fs.Pipeline.from_module(module)
    assert set(pipeline.assets) == {"numbers", "doubled"}
    assert pipeline.name == "m"


def test_graph_formats() -> None:
    pipeline = fs.Pipeline([numbers, doubled, total], name="p")
    assert "numbers --> " not in pipeline.graph("text")
    assert pipeline.graph("text").splitlines()[-1] == "total <- doubled"
    mermaid = pipeline.graph("mermaid")
    assert mermaid.startswith("graph TD") and "-->" in mermaid
    dot = pipeline.graph("dot")
    assert '"numbers" -> "doubled";' in dot
    assert "mermaid" in pipeline._repr_html_()
    assert set(pipeline._repr_mimebundle_()) >= {"text/html", "text/plain"}
    with pytest.raises(ValueError, match="unknown graph format"):
        pipeline.graph("png")


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    n = draw(st.integers(min_value=1, max_value=30))
    nodes = []
    for i in range(n):
        deps = (
            draw(st.lists(st.integers(min_value=0, max_value=max(i - 1, 0)), max_size=4))
            if i
            else []
        )
        nodes.append((f"n{i}", sorted({f"n{d}" for d in deps})))
    return nodes


@given(dags(), st.randoms())
def test_order_respects_dependencies(nodes: list[tuple[str, list[str]]], rnd: object) -> None:
    shuffled = list(nodes)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    pipeline = fs.Pipeline([_asset(n, d) for n, d in shuffled])
    position = {n: i for i, n in enumerate(pipeline.order)}
    for name, deps in nodes:
        for dep in deps:
            assert position[dep] < position[name]
    for name, _ in nodes:
        up = pipeline.upstream(name, include_self=True)
        assert up[-1] == name and name not in pipeline.upstream(name)
        for each in up:
            assert set(pipeline[each].deps) <= set(up)


@given(dags(), st.data())
def test_added_back_edge_is_a_cycle(
    nodes: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    edges = [(n, d) for n, deps in nodes for d in deps]
    if not edges:
        return
    consumer, producer = data.draw(st.sampled_from(edges))
    patched = [(n, [*d, consumer] if n == producer else d) for n, d in nodes]
    with pytest.raises(fs.CycleError) as info:
        fs.Pipeline([_asset(n, d) for n, d in patched])
    cycle = info.value.cycle
    for src, dst in zip(cycle, cycle[1:], strict=False):
        assert src in dict(patched)[dst]


@given(dags(), st.data())
def test_upstream_with_self_is_the_closure_of_any_selection(
    nodes: list[tuple[str, list[str]]], data: st.DataObject
) -> None:
    # Also when the selection is every asset (found without a traversal), in any order.
    pipeline = fs.Pipeline([_asset(n, d) for n, d in nodes])
    names = [n for n, _ in nodes]
    selected = data.draw(st.lists(st.sampled_from(names), unique=True) | st.permutations(names))
    closure = set(selected)
    stack = list(selected)
    while stack:
        for dep in pipeline[stack.pop()].deps:
            if dep not in closure:
                closure.add(dep)
                stack.append(dep)
    expected = [n for n in pipeline.order if n in closure]
    assert pipeline.upstream(selected, include_self=True) == expected
    assert pipeline.upstream(selected, include_self=True, scheduled_only=True) == expected
