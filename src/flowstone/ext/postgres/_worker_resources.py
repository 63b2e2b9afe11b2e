"""Which resources a scatter asset's item function reads, so a worker checks it has them.

A worker that lacks a resource would fail every item it claims with "no resource named …"
(and, through the shared tolerance, the whole run). It looks before claiming: the names an
item function reads as ``<ctx>.resources.<name>`` or ``<ctx>.resources["<name>"]``, in its
own code and in the functions and lambdas defined inside it, are found in its bytecode.
Resources reached another way (through a helper function, or a variable holding
``ctx.resources``) are not seen, and fail the items as before.
"""

from __future__ import annotations

import dis
import functools
import inspect
from types import CodeType
from typing import TYPE_CHECKING, Any

from flowstone import Resources

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["missing_resources", "resources_read_by"]

_ATTRIBUTE_READS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


def resources_read_by(fn: Callable[..., Any]) -> frozenset[str]:
    """The resource names ``fn`` reads from ``….resources`` (see the module's docstring)."""
    code = _code_of(fn)
    if code is None:
        return frozenset()
    names: set[str] = set()
    for each in _code_objects(code):
        names.update(_names_in(each))
    # Mapping methods (``ctx.resources.get("x")``) are not resources.
    return frozenset(name for name in names if not hasattr(Resources, name))


def missing_resources(fn: Callable[..., Any], available: Mapping[str, Any]) -> list[str]:
    """The resources ``fn`` reads that ``available`` lacks, sorted."""
    return sorted(name for name in resources_read_by(fn) if name not in available)


def _code_of(fn: Callable[..., Any]) -> CodeType | None:
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:  # a callable object: its __call__
        code = getattr(getattr(fn, "__call__", None), "__code__", None)  # noqa: B004 - the method's code, not a callability check
    return code if isinstance(code, CodeType) else None


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _names_in(code: CodeType) -> Iterator[str]:
    instructions = list(dis.get_instructions(code))
    for i, instruction in enumerate(instructions[:-1]):
        if instruction.opname not in _ATTRIBUTE_READS or instruction.argval != "resources":
            continue
        following = instructions[i + 1]
        if following.opname in _ATTRIBUTE_READS and isinstance(following.argval, str):
            yield following.argval
        elif following.opname == "LOAD_CONST" and isinstance(following.argval, str):
            subscript = instructions[i + 2] if i + 2 < len(instructions) else None
            if subscript is not None and (
                subscript.opname == "BINARY_SUBSCR"
                or (subscript.opname == "BINARY_OP" and subscript.argrepr == "[]")
            ):
                yield following.argval
