"""Faster constructors for the frozen, slotted dataclasses a run builds per asset.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__(self, name,
value)``: a global look-up, an attribute look-up and a generic ``setattr`` per field. A run
builds two materialization records, two events and an :class:`~flowstone.protocols.IOContext`
per asset, so that is a good part of what an asset costs beyond its function.

:func:`slot_constructor` makes, once per class, a function with the same keyword parameters
and defaults as the class's ``__init__`` that creates the object with ``object.__new__`` and
fills each slot through the class's own slot descriptor. The object it returns is an
ordinary instance of the class, equal to what ``cls(**fields)`` builds (same fields, same
default factories called), and frozen like it. It applies to dataclasses without
``__post_init__``, ``InitVar`` fields or fields left out of ``__init__`` (it refuses the
others).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["slot_constructor"]

T = TypeVar("T")

_MISSING = object()


def slot_constructor(cls: type[T]) -> Callable[..., T]:
    """A function that builds ``cls`` from keyword arguments, as ``cls(**kwargs)`` does,
    without a ``setattr`` call per field (see the module docstring).

    :raises TypeError: ``cls`` is not a slotted dataclass this applies to
    """
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__; build it with its constructor")
    if set(inspect.signature(cls).parameters) != {f.name for f in dataclasses.fields(cls)}:
        # An InitVar, a field left out of __init__, or an __init__ of its own.
        raise TypeError(f"{cls.__name__}'s constructor parameters are not its fields")
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": _MISSING}
    params: list[str] = []
    body: list[str] = []
    for index, field in enumerate(dataclasses.fields(cls)):
        if not field.init:
            raise TypeError(f"{cls.__name__}.{field.name} is not set by __init__")
        slot = getattr(cls, field.name, None)
        if not isinstance(slot, types.MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{field.name} is not a slot")
        namespace[f"_set{index}"] = slot.__set__
        value = field.name
        if field.default is not dataclasses.MISSING:
            namespace[f"_default{index}"] = field.default
            params.append(f"{field.name}=_default{index}")
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory{index}"] = field.default_factory
            params.append(f"{field.name}=_MISSING")
            value = f"_factory{index}() if {field.name} is _MISSING else {field.name}"
        else:
            params.append(field.name)
        body.append(f"    _set{index}(obj, {value})\n")
    source = (
        f"def build_{cls.__name__}(*, {', '.join(params)}):\n"
        "    obj = _new(_cls)\n" + "".join(body) + "    return obj\n"
    )
    exec(source, namespace)  # the source is made above from field names only
    build = cast("Callable[..., T]", namespace[f"build_{cls.__name__}"])
    build.__doc__ = f"Build a {cls.__name__} (keyword arguments as its constructor takes)."
    return build
