"""Asset checks: ``@check``, :class:`CheckDef`, :class:`CheckResult` and :class:`CheckRecord`.

A check is a function of one asset's value that says whether the value is good::

    @fs.check(asset="orders", severity="error")
    async def no_negative_totals(orders: list[dict]) -> fs.CheckResult:
        bad = [o for o in orders if o["total"] < 0]
        return fs.CheckResult(passed=not bad, metadata={"bad": len(bad)})

A check joins a pipeline like an asset does: ``fs.Pipeline([orders, no_negative_totals])``,
or found at the top level of a module given to the pipeline. Its one input parameter is
named after its asset (like an asset's input); a parameter named ``ctx`` or ``context``
(or annotated :class:`~flowstone.Context`) receives the context. The run executes it right
after the asset is materialized (see :mod:`flowstone._core.check_runner`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from .assets import AssetDef, code_fingerprint
from .errors import DefinitionError, ExecutionError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from datetime import datetime

__all__ = [
    "SEVERITIES",
    "CheckDef",
    "CheckFailedError",
    "CheckRecord",
    "CheckResult",
    "InvalidCheckError",
    "Severity",
    "check",
]

#: How much a failing check matters: ``"warn"`` only records, ``"error"`` blocks dependents.
Severity = Literal["warn", "error"]
SEVERITIES: tuple[str, ...] = ("warn", "error")

_CONTEXT_NAMES = frozenset({"ctx", "context"})


class InvalidCheckError(DefinitionError):
    """A check is defined in a way that cannot work: a bad option, a parameter that does
    not name its asset, or an ``asset=`` that names no asset of the pipeline.

    :param check: the check's name
    :param reason: what is wrong
    """

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"check {check!r}: {reason}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a check returns: whether the value passed, and JSON-able details.

    A check may also return a bare ``bool``.

    :param passed: whether the value passed the check
    :param metadata: JSON-able details (counts, offending keys), kept in the check's record
    :param description: a sentence for people, kept in the record's metadata
    """

    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """The outcome of one check of one asset's value (and partition), in one run.

    :param run_id: the run that checked (for ``runtime.run_checks``: the run that
        materialized the value checked)
    :param asset: the asset checked
    :param partition: its partition key, or ``None``
    :param check: the check's name
    :param severity: ``"warn"`` or ``"error"``
    :param passed: whether the value passed (``False`` when the check raised)
    :param metadata: what the check returned in :attr:`CheckResult.metadata`
    :param started_at: when it started
    :param ended_at: when it ended
    :param error: the error the check raised (``"TypeName: message"``), if it raised
    :param error_type: the error's type name, if it raised
    :param data_version: the data version of the value checked
    """

    run_id: str
    asset: str
    partition: str | None
    check: str
    severity: str
    passed: bool
    metadata: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    error_type: str | None = None
    data_version: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the check took, when both ends are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @property
    def blocking(self) -> bool:
        """Whether it failed with severity ``"error"`` (the asset's dependents are blocked)."""
        return not self.passed and self.severity == "error"

    def replace(self, **changes: Any) -> CheckRecord:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


class CheckFailedError(ExecutionError):
    """An asset's value failed an ``error`` check in a run.

    It is what ``materialize`` raises for such a run (with ``raise_on_error``; the result is
    ``.result``) and what ``result.errors`` holds for the asset. The value stays stored.

    :param asset: the asset whose value failed
    :param partition: its partition key, or ``None``
    :param run_id: the run
    :param checks: the names of the ``error`` checks it failed
    """

    def __init__(
        self, asset: str, partition: str | None, run_id: str, checks: tuple[str, ...]
    ) -> None:
        self.asset = asset
        self.partition = partition
        self.run_id = run_id
        self.checks = checks
        where = f" partition {partition!r}" if partition is not None else ""
        names = ", ".join(repr(c) for c in checks)
        super().__init__(f"asset {asset!r}{where} failed check {names} in run {run_id!r}")


def _is_context(param: inspect.Parameter) -> bool:
    if param.name in _CONTEXT_NAMES:
        return True
    annotation = param.annotation
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == "Context"
    return getattr(annotation, "__name__", None) == "Context"


class CheckDef:
    """A defined check: its function, the asset it checks and its severity.

    Made by :func:`check`. Calling it calls the function directly (handy in unit tests).

    :ivar name: the check's name (unique among the checks of its asset)
    :ivar asset: the name of the asset it checks
    :ivar severity: ``"warn"`` or ``"error"``
    :ivar param: the parameter that receives the asset's value
    :ivar context_param: the parameter that receives the context, if any
    :ivar is_async: whether the function is ``async def`` (a plain one runs in a thread)
    :ivar description: a description (default: the docstring)
    :ivar code_version: a fingerprint of the function
    """

    __slots__ = (
        "__dict__",
        "asset",
        "code_version",
        "context_param",
        "description",
        "fn",
        "is_async",
        "name",
        "param",
        "severity",
    )

    name: str
    asset: str
    severity: str
    fn: Callable[..., bool | CheckResult | Awaitable[bool | CheckResult]]
    param: str
    context_param: str | None
    is_async: bool
    description: str | None
    code_version: str

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        asset: str | AssetDef[..., Any],
        severity: str = "warn",
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        check_name = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(check_name, str) or not check_name or check_name == "<lambda>":
            raise InvalidCheckError(repr(fn), "needs a name= (a lambda has none)")
        if not callable(fn):
            raise InvalidCheckError(check_name, "@check needs a function")
        if isinstance(asset, AssetDef):
            asset = asset.name
        if not isinstance(asset, str) or not asset:
            raise InvalidCheckError(
                check_name, f"asset= must name the asset it checks, not {asset!r}"
            )
        if severity not in SEVERITIES:
            raise InvalidCheckError(
                check_name, f"severity= must be 'warn' or 'error', not {severity!r}"
            )
        if description is not None and not isinstance(description, str):
            raise InvalidCheckError(check_name, f"description= must be a str, not {description!r}")
        self.name = check_name
        self.asset = asset
        self.severity = severity
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))
        self.description = description or inspect.getdoc(fn)
        self.code_version = code_fingerprint(fn)
        self._analyse()
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__

    def _analyse(self) -> None:
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError) as exc:
            raise InvalidCheckError(
                self.name, f"cannot read the function's signature: {exc}"
            ) from None
        inputs: list[str] = []
        self.context_param = None
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise InvalidCheckError(
                    self.name, f"*{param.name} parameters are not supported; name the asset"
                )
            if _is_context(param):
                if self.context_param is not None:
                    raise InvalidCheckError(self.name, "only one parameter may receive the context")
                self.context_param = param.name
            elif param.default is param.empty:
                inputs.append(param.name)
        if len(inputs) != 1:
            raise InvalidCheckError(
                self.name,
                f"takes the value of asset {self.asset!r} as its one parameter "
                f"(named {self.asset!r}), but has {len(inputs)}: {inputs}",
            )
        (value_param,) = inputs
        if value_param != self.asset and self.asset.isidentifier():
            raise InvalidCheckError(
                self.name,
                f"its parameter {value_param!r} does not match its asset {self.asset!r}; "
                f"name it {self.asset!r}",
            )
        self.param = value_param

    @property
    def blocking(self) -> bool:
        """Whether a failure blocks the asset's dependents (severity ``"error"``)."""
        return self.severity == "error"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly (no runtime): handy in unit tests."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<CheckDef {self.name!r} asset={self.asset!r} severity={self.severity!r}>"

    def __get__(self, instance: object, owner: type | None = None) -> CheckDef:
        return self


@overload
def check(
    fn: Callable[..., Any],
    /,
) -> CheckDef: ...
@overload
def check(
    *,
    asset: str | AssetDef[..., Any],
    severity: Severity = "warn",
    name: str | None = None,
    description: str | None = None,
) -> Callable[[Callable[..., Any]], CheckDef]: ...
def check(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    asset: str | AssetDef[..., Any] | None = None,
    severity: Severity = "warn",
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Declare a data-quality check of an asset's value.

    The function receives the asset's value through its one parameter, named after the
    asset (any name, when the asset's name is not an identifier), and returns a :class:`CheckResult` or a bare ``bool``. An async function runs
    on the event loop, a plain one in a worker thread. Add the check to the pipeline beside
    its asset (``fs.Pipeline([orders, no_negative_totals])``, or keep it in a module given
    to the pipeline).

    :param asset: the asset it checks (a name or the asset); bare ``@check`` takes it from
        the function's one parameter
    :param severity: ``"warn"`` (only recorded) or ``"error"`` (a failure blocks the asset's
        dependents in the run and fails the run)
    :param name: the check's name (default: the function's name)
    :param description: a description (default: the docstring)
    :return: a :class:`CheckDef`
    :raises InvalidCheckError: the options or the function's parameters cannot work
    """

    def decorate(inner: Callable[..., Any]) -> CheckDef:
        target = asset
        if target is None:
            target = _sole_parameter(inner, name)
        return CheckDef(inner, asset=target, severity=severity, name=name, description=description)

    if fn is not None:
        return decorate(fn)
    return decorate


def _sole_parameter(fn: Callable[..., Any], name: str | None) -> str:
    """The asset a bare ``@check`` checks: the name of its one non-context parameter."""
    shown = str(name or getattr(fn, "__name__", None) or repr(fn))
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if not _is_context(p) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) != 1:
        raise InvalidCheckError(
            shown, "name the asset it checks: @check(asset='...') (it has not one parameter)"
        )
    return params[0].name
