"""A blocking call inside an ``async def`` asset is warned about, once, naming the asset."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

import flowstone as fs


def _held(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]


async def test_an_async_asset_that_blocks_the_loop_is_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @fs.asset
    async def blocking() -> int:
        time.sleep(0.6)  # the mistake under test: it holds the loop
        return 1

    @fs.asset
    async def polite() -> int:
        await anyio.sleep(0.3)
        return 2

    with caplog.at_level(logging.WARNING, logger="flowstone"):
        async with fs.Runtime(loop_block_warning=0.1) as runtime:
            for _ in range(2):
                await runtime.materialize([blocking, polite])
    (message,) = _held(caplog)
    assert message.startswith("asset 'blocking' has held the event loop for more than 0.1s")


async def test_none_turns_the_loop_warning_off(caplog: pytest.LogCaptureFixture) -> None:
    @fs.asset
    async def blocking() -> int:
        time.sleep(0.4)
        return 1

    with caplog.at_level(logging.WARNING, logger="flowstone"):
        async with fs.Runtime(loop_block_warning=None) as runtime:
            await runtime.materialize([blocking])
    assert _held(caplog) == []


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), "0.5", True])
def test_a_bad_loop_block_warning_is_a_configuration_error(value: object) -> None:
    with pytest.raises(fs.ConfigurationError, match="loop_block_warning="):
        fs.Runtime(loop_block_warning=value)  # type: ignore[arg-type]
