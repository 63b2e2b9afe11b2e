"""The pytest plugin, as a user's test suite sees it."""

from __future__ import annotations

from pathlib import Path

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


# A user's own test beside it: the runtime is opened in the loop the test runs in.
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


async def test_the_runtime_is_opened_in_the_test_s_loop(flowstone_runtime, flowstone_events):
    assert flowstone_events.opened_in is asyncio.get_running_loop()
"""


def marked(source: str, marker: str) -> str:
    """``source`` with ``marker`` on each test (unchanged for no marker)."""
    if not marker:
        return source
    return f"import pytest\n{source}".replace("\nasync def test_", f"\n{marker}\nasync def test_")


def test_the_readme_example_is_a_whole_test() -> None:
    source = readme_testing_example()
    assert "async def test_" in source and "flowstone_runtime" in source
    compile(source, "README.md", "exec")


@pytest.mark.parametrize(
    ("plugins", "marker"),
    [
        pytest.param(("-o", "asyncio_mode=strict"), "", id="pytest-asyncio-strict"),
        pytest.param(("-o", "asyncio_mode=auto"), "", id="pytest-asyncio-auto"),
        pytest.param(
            ("-o", "asyncio_mode=strict"), "@pytest.mark.asyncio", id="pytest-asyncio-marked"
        ),
        pytest.param(("-p", "no:asyncio"), "", id="anyio-alone"),
        pytest.param(("-p", "no:asyncio"), "@pytest.mark.anyio", id="anyio-alone-marked"),
        pytest.param(
            ("-o", "asyncio_mode=strict"), "@pytest.mark.anyio", id="anyio-beside-pytest-asyncio"
        ),
    ],
)
def test_the_readme_example_in_a_project_without_pytest_config(
    pytester: pytest.Pytester, plugins: tuple[str, ...], marker: str
) -> None:
    """The README's example, pasted into a fresh project, passes as it is (and marked)."""
    pytester.makepyfile(
        test_readme=marked(readme_testing_example(), marker),
        test_loop=marked(LOOP_CHECK, marker),
    )
    result = pytester.runpytest_subprocess(*STRICT_WARNINGS, *plugins)
    result.assert_outcomes(passed=2)


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
