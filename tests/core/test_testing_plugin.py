"""The pytest plugin, as a user's test suite sees it."""

from __future__ import annotations

import pytest

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
