"""Checks of ``@asset`` options, so that a bad option fails when the asset is defined.

Each check raises :class:`~flowstone.InvalidAssetError` naming the asset and the option,
instead of letting a wrong value fail later, in a run, with a bare ``TypeError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidAssetError
from .partitions import PartitionsDefinition

__all__ = ["check_asset_name", "check_asset_options", "check_dependency_spec"]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_asset_name(name: object, fn: object) -> str:
    """The asset's name: ``name`` if given, else the function's; raise if unusable."""
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidAssetError(
            str(getattr(fn, "__qualname__", None) or repr(fn)),
            f"name= must be a non-empty str, not {_shown(name)}",
        )
    asset_name = name or getattr(fn, "__name__", None)
    if not isinstance(asset_name, str) or not asset_name or asset_name == "<lambda>":
        raise InvalidAssetError(repr(fn), "give the asset a name with @asset(name=...)")
    return asset_name


def check_dependency_spec(asset: str, option: str, value: object) -> None:
    """``deps`` / ``optional_deps``: a name, an asset, an iterable of those (or a mapping
    of parameter names, for ``deps``)."""
    from .assets import AssetDef  # a cycle at import time otherwise

    if value is None or isinstance(value, str | AssetDef):
        return
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise InvalidAssetError(
            asset,
            f"{option}= takes asset names or assets (or a list of them), not {_shown(value)}",
        )
    if isinstance(value, Mapping):
        if option != "deps":
            raise InvalidAssetError(
                asset, f"{option}= takes asset names or assets, not a mapping ({_shown(value)})"
            )
        for param in value:
            if not isinstance(param, str) or not param:
                raise InvalidAssetError(
                    asset, f"deps= mapping keys must be parameter names, not {_shown(param)}"
                )


def check_asset_options(
    asset: str,
    *,
    description: object,
    metadata: object,
    io_manager: object,
    partitions: object,
    timeout: object,
    code_version: object,
    tags: object,
) -> None:
    """Raise :class:`InvalidAssetError` naming the first option of the wrong type or value."""
    if description is not None and not isinstance(description, str):
        raise InvalidAssetError(asset, f"description= must be a str, not {_shown(description)}")
    _check_mapping(asset, "metadata", metadata, str_values=False)
    _check_mapping(asset, "tags", tags, str_values=True)
    if io_manager is not None and (not isinstance(io_manager, str) or not io_manager):
        raise InvalidAssetError(
            asset,
            f"io_manager= must be the name of a registered IO manager, not {_shown(io_manager)}",
        )
    if partitions is not None and not isinstance(partitions, PartitionsDefinition):
        raise InvalidAssetError(
            asset,
            "partitions= must be a partitions definition such as "
            f"fs.DailyPartitions(start=...), not {_shown(partitions)}",
        )
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < math.inf
    ):
        raise InvalidAssetError(
            asset, f"timeout must be positive: a finite number of seconds, not {_shown(timeout)}"
        )
    if code_version is not None and (not isinstance(code_version, str) or not code_version):
        raise InvalidAssetError(
            asset, f"code_version= must be a non-empty str, not {_shown(code_version)}"
        )


def _check_mapping(asset: str, option: str, value: object, *, str_values: bool) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise InvalidAssetError(asset, f"{option}= must be a mapping, not {_shown(value)}")
    items: Iterable[tuple[Any, Any]] = value.items()
    for key, item in items:
        if not isinstance(key, str):
            raise InvalidAssetError(asset, f"{option}= keys must be str, not {_shown(key)}")
        if str_values and not isinstance(item, str):
            raise InvalidAssetError(
                asset, f"{option}= values must be str, not {_shown(item)} (for {key!r})"
            )
