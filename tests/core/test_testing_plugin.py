"""The pytest plugin, as a user's test suite sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import flowstone as fs
from flowstone.testing import assert_reused

pytest_plugins = ["pytester"]


def test_fixture_and_helpers_in_a_user_suite(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        import flowstone as fs
        from flowstone.testing import assert_succeeded, assert_failed

        @fs.asset
        async def a() -> int:
            return 1

        @fs.asset
        async def b(a: int) -> int:
            return a + 1

        @fs.asset
        async def c(b: int) -> int:
            raise ValueError("boom")

        async def test_pipeline(flowstone_runtime, flowstone_events):
            result = await flowstone_runtime.materialize([a, b, c], raise_on_error=False)
            assert_succeeded(result, "b", value=2)
            assert_failed(result, "c", ValueError)
            assert flowstone_events.events

        async def test_fresh_runtime_each_test(flowstone_runtime):
            assert not await flowstone_runtime.exists("a")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_helpers_fail_with_clear_messages(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        import flowstone as fs
        from flowstone.testing import assert_succeeded

        @fs.asset
        async def a() -> int:
            return 1

        async def test_wrong_value(flowstone_runtime):
            result = await flowstone_runtime.materialize([a])
            assert_succeeded(result, "a", value=2)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*asset 'a' is 1, expected 2*"])


# -- the README's example in a project of the user's own --------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"
# Every warning is an error, except pytest-asyncio's own about the user's config.
STRICT_WARNINGS = (
    "-p",
    "no:cacheprovider",
    "-W",
    "error",
    "-W",
    "ignore:The configuration option:pytest.PytestDeprecationWarning",
)


def readme_testing_example() -> str:
    """The first ``python`` block of the README's "Testing" section, as a user pastes it."""
    section = README.read_text().split("### Testing", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    return block


def run_readme_example(pytester: pytest.Pytester, *args: str, marker: str = "") -> Any:
    """Run the README's example alone in a fresh project without any pytest config."""
    source = readme_testing_example()
    if marker:
        source = f"import pytest\n{source}".replace("async def test_", f"{marker}\nasync def test_")
    pytester.makepyfile(test_readme=source)
    return pytester.runpytest_subprocess(*STRICT_WARNINGS, *args)


def test_the_readme_example_is_a_whole_test() -> None:
    source = readme_testing_example()
    assert "async def test_" in source and "flowstone_runtime" in source
    compile(source, "README.md", "exec")


def test_the_readme_example_passes_under_pytest_asyncio_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    result = run_readme_example(pytester, "-o", "asyncio_mode=strict")
    result.assert_outcomes(passed=1)


def test_the_readme_example_passes_under_pytest_asyncio_auto_mode(
    pytester: pytest.Pytester,
) -> None:
    result = run_readme_example(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1)


def test_a_marked_test_passes_under_pytest_asyncio_strict_mode(
    pytester: pytest.Pytester,
) -> None:
    result = run_readme_example(
        pytester, "-o", "asyncio_mode=strict", marker="@pytest.mark.asyncio"
    )
    result.assert_outcomes(passed=1)


def test_the_readme_example_passes_with_anyio_alone(pytester: pytest.Pytester) -> None:
    unmarked = run_readme_example(pytester, "-p", "no:asyncio")
    unmarked.assert_outcomes(passed=1)
    marked = run_readme_example(pytester, "-p", "no:asyncio", marker="@pytest.mark.anyio")
    marked.assert_outcomes(passed=1)


LOOP_CHECK = """
import asyncio

import pytest

import flowstone as fs


class LoopSink(fs.MemoryEventSink):
    opened_in = None

    async def __aenter__(self):
        self.opened_in = asyncio.get_running_loop()
        return self

    async def __aexit__(self, *exc_info):
        return None


@pytest.fixture
def flowstone_events():
    return LoopSink()


@pytest.fixture
def anyio_backend():
    return "asyncio"


MARKER
async def test_the_runtime_is_opened_in_the_test_s_loop(flowstone_runtime, flowstone_events):
    assert flowstone_events.opened_in is asyncio.get_running_loop()
"""


@pytest.mark.parametrize(
    ("marker", "mode"),
    [
        ("@pytest.mark.anyio", "strict"),
        ("@pytest.mark.asyncio", "strict"),
        ("", "strict"),
        ("", "auto"),
    ],
)
def test_the_runtime_is_opened_in_the_loop_the_test_runs_in(
    pytester: pytest.Pytester, marker: str, mode: str
) -> None:
    pytester.makepyfile(LOOP_CHECK.replace("MARKER", marker))
    result = pytester.runpytest_subprocess(*STRICT_WARNINGS, "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=1)


# -- assert_reused, named like the other helpers ----------------------------------------


@fs.asset
async def up() -> int:
    return 2


@fs.asset
async def down(up: int) -> int:
    return up * 10


async def test_assert_reused_takes_the_names_as_arguments(flowstone_runtime: fs.Runtime) -> None:
    await flowstone_runtime.materialize([up, down], "down")
    again = await flowstone_runtime.materialize([up, down], "down")
    assert_reused(again, "up")
    assert_reused(again, "down", reused=False)
    with pytest.raises(AssertionError, match="asset 'down' was not reused"):
        assert_reused(again, "up", "down")
    with pytest.raises(AssertionError, match="asset 'up' was not computed"):
        assert_reused(again, "down", "up", reused=False)
    assert_reused(again, reused=False)  # no names: the run's selection
    with pytest.raises(AssertionError, match="asset 'down' was not reused"):
        assert_reused(again)


async def test_assert_reused_with_a_list_still_works_and_warns(
    flowstone_runtime: fs.Runtime,
) -> None:
    await flowstone_runtime.materialize([up, down], "down")
    again = await flowstone_runtime.materialize([up, down], "down")
    with pytest.warns(DeprecationWarning, match=r"assert_reused\(result, 'a', 'b'\)"):
        assert_reused(again, ["up"])
    with (
        pytest.warns(DeprecationWarning),
        pytest.raises(AssertionError, match="asset 'down' was not reused"),
    ):
        assert_reused(again, ["up", "down"])
