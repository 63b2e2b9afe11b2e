"""Values that storage must refuse: deep nesting and values that contain themselves."""

from __future__ import annotations

from typing import Any


def nested(depth: int) -> list[Any]:
    """A list nested ``depth`` levels deep."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def cyclic_list() -> list[Any]:
    """A list that holds itself (through a dict)."""
    value: list[Any] = [1, {"k": []}]
    value[1]["k"].append(value)
    return value


def cyclic_dict() -> dict[str, Any]:
    """A dict that holds itself."""
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value
