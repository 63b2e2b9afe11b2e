"""The @asset decorator: parameters, options, kinds and code versions."""

from __future__ import annotations

import pytest

import flowstone as fs
from flowstone.protocols import AssetKind, attach_kind


def test_bare_decorator_reads_dependencies_and_context() -> None:
    @fs.asset
    async def total(ctx: fs.Context, doubled: list[int], factor: int = 2) -> int:
        return sum(doubled) * factor

    assert isinstance(total, fs.AssetDef)
    assert total.name == "total"
    assert total.context_param == "ctx"
    assert dict(total.inputs) == {"doubled": "doubled", "factor": "factor"}
    assert total.deps == ("doubled", "factor")
    assert total.is_async


def test_context_by_name_or_annotation() -> None:
    @fs.asset
    def a(context) -> int:  # type: ignore[no-untyped-def]
        return 1

    @fs.asset
    def b(anything: fs.Context) -> int:
        return 1

    assert a.context_param == "context" and not a.deps
    assert b.context_param == "anything" and not b.deps
    assert not a.is_async


def test_options_are_kept() -> None:
    days = fs.DailyPartitions(start="2025-01-01")

    @fs.asset(
        name="Revenue",
        retry=fs.Retry(attempts=3),
        timeout=5,
        partitions=days,
        io_manager="memory",
        code_version="v1",
        tags={"team": "finance"},
        metadata={"owner": "ana"},
        description="money",
    )
    async def revenue() -> float:
        return 1.0

    assert revenue.name == "Revenue"
    assert revenue.retry.attempts == 3
    assert revenue.timeout == 5
    assert revenue.partitions is days
    assert revenue.code_version == "v1"
    assert revenue.tags == {"team": "finance"}
    assert revenue.description == "money"


def test_deps_mapping_for_non_identifier_names_and_ordering_deps() -> None:
    @fs.asset(deps={"raw": "raw-orders"})
    async def cleaned(raw: list[int]) -> list[int]:
        return raw

    @fs.asset(deps=["setup", cleaned])
    async def after(cleaned: list[int]) -> int:
        return len(cleaned)

    assert dict(cleaned.inputs) == {"raw": "raw-orders"}
    assert after.ordering_deps == ("setup",)
    assert set(after.deps) == {"cleaned", "setup"}


def test_optional_deps_must_name_inputs() -> None:
    with pytest.raises(fs.InvalidAssetError, match="optional_deps names 'nope'"):

        @fs.asset(optional_deps=["nope"])
        async def a(x: int) -> int:
            return x


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(*args): ...", r"\*args parameters are not supported"),
        ("def f(**kw): ...", r"\*kw parameters are not supported"),
        ("def f(x, /): ...", "positional-only"),
    ],
)
def test_invalid_signatures(source: str, message: str) -> None:
    namespace: dict[str, object] = {}
    exec(source, namespace)
    with pytest.raises(fs.InvalidAssetError, match=message):
        fs.asset(namespace["f"])  # type: ignore[call-overload]


def test_invalid_timeout_and_self_dependency() -> None:
    with pytest.raises(fs.InvalidAssetError, match="timeout must be positive"):

        @fs.asset(timeout=0)
        async def a() -> int:
            return 1

    with pytest.raises(fs.InvalidAssetError, match="cannot depend on itself"):

        @fs.asset
        async def b(b: int) -> int:
            return b


def test_code_version_changes_with_the_code() -> None:
    def make(n: int) -> fs.AssetDef[..., int]:
        src = f"async def thing():\n    return {n}\n"
        namespace: dict[str, object] = {}
        exec(src, namespace)
        return fs.asset(namespace["thing"])  # type: ignore[call-overload, no-any-return]

    assert make(1).code_version == make(1).code_version
    assert make(1).code_version != make(2).code_version


def test_asset_is_callable_directly() -> None:
    @fs.asset
    def doubled(numbers: list[int]) -> list[int]:
        return [n * 2 for n in numbers]

    assert doubled([1, 2]) == [2, 4]


def test_kinds_attach_on_either_side_of_asset() -> None:
    class Special(AssetKind):
        kind = "special"
        reserved_params = frozenset({"item"})

    async def fn(item: int, other: int) -> int:
        return item

    before = fs.asset(attach_kind(fn, Special()))
    assert before.kind == "special" and before.deps == ("other",)

    async def fn2(item: int) -> int:
        return item

    after = attach_kind(fs.asset(fn2), Special())
    assert after.kind == "special" and after.deps == ()
    with pytest.raises(fs.InvalidAssetError, match="already a 'special' asset"):
        attach_kind(after, Special())


def test_replace_makes_a_changed_copy() -> None:
    @fs.asset
    async def a() -> int:
        return 1

    b = a.replace(name="b", retry=2)
    assert (b.name, b.retry.attempts) == ("b", 2)
    assert (a.name, a.retry.attempts) == ("a", 1)
