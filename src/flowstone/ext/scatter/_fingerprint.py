"""Stable descriptions of scatter options, and the dependencies an ``items=`` callable reads.

A scatter's options are part of its asset's code version, so they must describe the same
way in every process: functions are described by a digest of their compiled code, never by
their ``repr`` (which holds a memory address).
"""

from __future__ import annotations

import dis
import functools
import inspect
import types
from typing import TYPE_CHECKING, Any

from flowstone.protocols import code_fingerprint

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["callable_fingerprint", "read_dependency_names"]


def callable_fingerprint(fn: Callable[..., Any] | None) -> str:
    """A stable string for a callable option: its name and a digest of its code.

    :param fn: a function, method, ``functools.partial`` or callable object (or ``None``)
    :return: ``"-"`` for ``None``; otherwise a description stable across processes
    """
    if fn is None:
        return "-"
    target = fn.func if isinstance(fn, functools.partial) else inspect.unwrap(fn)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{name}#{code_fingerprint(fn)}"


_LOAD_NAME_OPS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_DEREF", "LOAD_CLASSDEREF"}
)
_CONST_OPS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})


def _is_subscript(instruction: dis.Instruction) -> bool:
    if instruction.opname == "BINARY_SUBSCR":
        return True
    return instruction.opname == "BINARY_OP" and instruction.argrepr in ("[]", "NB_SUBSCR")


def _scan(code: types.CodeType, param: str, found: dict[str, None]) -> None:
    instructions = list(dis.get_instructions(code))
    for i, instruction in enumerate(instructions[:-2]):
        if instruction.opname not in _LOAD_NAME_OPS or instruction.argval != param:
            continue
        following = instructions[i + 1]
        after = instructions[i + 2]
        # deps["orders"]
        if (
            following.opname in _CONST_OPS
            and isinstance(following.argval, str)
            and _is_subscript(after)
        ):
            found[following.argval] = None
        # deps.get("orders")
        elif (
            following.opname in ("LOAD_METHOD", "LOAD_ATTR")
            and following.argval == "get"
            and after.opname in _CONST_OPS
            and isinstance(after.argval, str)
        ):
            found[after.argval] = None
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and param in const.co_freevars:
            # A nested function or comprehension that reads the mapping from the closure.
            _scan(const, param, found)


def read_dependency_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The asset names an ``items=`` callable reads from its mapping with a literal key.

    Finds ``deps["orders"]`` and ``deps.get("orders")`` in the function's code, where
    ``deps`` is its first parameter. Names read any other way are not found; declare those
    with ``@fs.asset(deps=[...])``.

    :param fn: the callable
    :return: the names, in the order they first appear
    """
    target = inspect.unwrap(fn)
    code = getattr(target, "__code__", None)
    if code is None or code.co_argcount < 1:
        return ()
    param = code.co_varnames[0]
    found: dict[str, None] = {}
    try:
        _scan(code, param, found)
    except Exception:  # pragma: no cover - an unusual code object is only a missed hint
        return tuple(found)
    return tuple(found)
