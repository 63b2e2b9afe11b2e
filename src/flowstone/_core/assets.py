"""Asset definitions: the ``@asset`` decorator, :class:`AssetDef` and asset kinds.

An asset is a named value computed by a function from the assets its parameters name.
Plugins add *kinds* (scatter, parallel, router, …) by attaching an :class:`AssetKind` to
the function; the materializer then hands such an asset to the coordinator registered
for its kind.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, ParamSpec, TypeVar, overload

from .asset_options import check_asset_name, check_asset_options, check_dependency_spec
from .context import Context
from .dependency_mappings import dependency_mappings
from .errors import InvalidAssetError
from .retry import Retry

if TYPE_CHECKING:
    from datetime import datetime

    from .partition_mappings import PartitionMapping
    from .partitions import PartitionsDefinition
    from .pipeline import Pipeline

__all__ = [
    "AssetDef",
    "AssetKind",
    "SkipAsset",
    "Suspended",
    "asset",
    "attach_kind",
    "code_fingerprint",
]

P = ParamSpec("P")
R = TypeVar("R")

_CONTEXT_NAMES = frozenset({"ctx", "context"})
_KIND_ATTR = "__flowstone_kind__"


class SkipAsset(Exception):
    """Raise from an asset (or a coordinator) to record it as ``skipped`` instead of failed.

    Its downstream assets are skipped too, unless they list it in ``optional_deps``.
    """

    def __init__(self, reason: str = "skipped") -> None:
        self.reason = reason
        super().__init__(reason)


class Suspended(Exception):
    """Raise from a coordinator (or an asset) to suspend the asset: it waits, the run goes on.

    The run records the asset as ``waiting``; its dependents wait with it, assets that do
    not depend on it keep running, and once nothing else can run the run ends
    ``RunStatus.WAITING`` without raising. Materializing the same ``run_id`` again (or
    ``runtime.resume(run_id)``) resumes it: what succeeded is reused and the suspended
    asset executes again, when whatever it waits for may have happened. It is never
    retried and never counts as a failure.

    :param reason: what the asset waits for, for people (``"approval gate … open"``)
    :param since: when the wait began, if known (a resumed wait keeps its first start)
    :param until: when the wait ends at the latest, if it has a deadline
    :param metadata: JSON-able details kept in the asset's waiting record
    """

    def __init__(
        self,
        reason: str = "waiting",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.reason = reason
        self.since = since
        self.until = until
        self.metadata: Mapping[str, Any] = dict(metadata or {})
        super().__init__(reason)


class AssetKind:
    """Base class for the specification a plugin attaches to an asset of its kind.

    Subclasses set :attr:`kind` (the registry name of the coordinator that executes it)
    and may override the hooks below. A kind object is immutable and part of the asset's
    code version through :meth:`fingerprint`.
    """

    #: The coordinator registry name that executes assets of this kind.
    kind: ClassVar[str] = "asset"
    #: Parameters filled by the coordinator rather than by dependencies (``item``, ``branches``).
    reserved_params: ClassVar[frozenset[str]] = frozenset()
    #: Whether a skip of this kind follows from the asset's inputs alone (a routed asset its
    #: router did not choose): while they are unchanged a run would skip it again, so
    #: ``status`` calls it ``"skipped"`` and a backfill does not run it again for that.
    skips_follow_inputs: ClassVar[bool] = False
    #: Whether the coordinator applies the asset's ``timeout=`` itself, to the part of its
    #: work that counts (a gate's body, not the wait for its signal); otherwise the
    #: materializer applies it around the whole execution.
    applies_own_timeout: ClassVar[bool] = False

    def extra_deps(self) -> tuple[str, ...]:
        """Upstream assets this kind adds for ordering (not passed as inputs)."""
        return ()

    def owned_deps(self) -> tuple[str, ...]:
        """Upstream assets the coordinator materializes itself, inside this asset's execution.

        They are edges of the graph (for cycles, lineage and display) but the run does not
        schedule them ahead of this asset.
        """
        return ()

    def edge_style(self, dependency: str) -> str:
        """How the edge from ``dependency`` is drawn: ``"solid"`` or ``"dashed"``."""
        return "solid"

    def validate(self, asset: AssetDef[..., Any], pipeline: Pipeline) -> None:
        """Check the asset against the whole pipeline; raise a ``DefinitionError`` if wrong."""

    def fingerprint(self) -> str:
        """A stable string describing the options that change the asset's value."""
        return repr(self)


def attach_kind(target: Callable[..., Any], spec: AssetKind) -> Any:
    """Attach ``spec`` to a function (before ``@asset``) or to an :class:`AssetDef` (after).

    Plugin decorators call this so that they work on either side of ``@asset``.

    :return: the function itself, or a new :class:`AssetDef` of the given kind
    :raises InvalidAssetError: the target already has another kind
    """
    if isinstance(target, AssetDef):
        if target.kind_spec is not None:
            raise InvalidAssetError(
                target.name, f"already a {target.kind!r} asset; it cannot also be {spec.kind!r}"
            )
        return target.replace(kind_spec=spec)
    existing = getattr(target, _KIND_ATTR, None)
    if existing is not None:
        raise InvalidAssetError(
            getattr(target, "__name__", repr(target)),
            f"already a {existing.kind!r} asset; it cannot also be {spec.kind!r}",
        )
    setattr(target, _KIND_ATTR, spec)
    return target


def _is_context_annotation(annotation: Any) -> bool:
    if annotation is Context:
        return True
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1] == "Context"
    return False


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """A digest of a callable's compiled code, constants and names (nested code included).

    Stable across processes (it never uses a ``repr`` holding a memory address), so it can
    version an asset or describe a callable option. Handles ``functools.partial`` and
    callable objects.
    """
    digest = hashlib.blake2b(digest_size=8)

    def feed(code: types.CodeType) -> None:
        digest.update(code.co_code)
        digest.update(repr(code.co_names).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                feed(const)
            else:
                digest.update(repr(const).encode())

    if isinstance(fn, functools.partial):
        digest.update(code_fingerprint(fn.func).encode())
        digest.update(repr((fn.args, sorted(fn.keywords.items()))).encode())
        return digest.hexdigest()
    target = inspect.unwrap(fn)
    code = getattr(target, "__code__", None)
    if code is None:
        code = getattr(inspect.getattr_static(type(target), "__call__", None), "__code__", None)
    if isinstance(code, types.CodeType):
        feed(code)
    else:
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        digest.update(f"{type(target).__module__}.{name}".encode())
    return digest.hexdigest()


class AssetDef(Generic[P, R]):
    """A defined asset: its function, its dependencies and its options.

    Made by :func:`asset`. Calling it calls the function directly, which keeps assets
    easy to unit-test. Instances are immutable; :meth:`replace` makes a changed copy.
    """

    __slots__ = (
        "__dict__",
        "_params",
        "code_version",
        "context_param",
        "defaults",
        "deps",
        "description",
        "fn",
        "inputs",
        "io_manager",
        "is_async",
        "kind_spec",
        "metadata",
        "name",
        "optional",
        "ordering_deps",
        "partition_mappings",
        "partitions",
        "retry",
        "tags",
        "timeout",
        "user_code_version",
    )

    name: str
    fn: Callable[P, R] | Callable[P, Awaitable[R]]
    inputs: Mapping[str, str]
    ordering_deps: tuple[str, ...]
    optional: frozenset[str]
    defaults: Mapping[str, Any]
    context_param: str | None
    is_async: bool
    description: str | None
    metadata: Mapping[str, Any]
    io_manager: str | None
    partitions: PartitionsDefinition | None
    partition_mappings: Mapping[str, PartitionMapping]
    retry: Retry
    timeout: float | None
    user_code_version: str | None
    code_version: str
    tags: Mapping[str, str]
    kind_spec: AssetKind | None
    deps: tuple[str, ...]

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str | None = None,
        deps: Sequence[str | AssetDef[..., Any]] | Mapping[str, str | AssetDef[..., Any]] = (),
        optional_deps: Iterable[str | AssetDef[..., Any]] = (),
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        io_manager: str | None = None,
        partitions: PartitionsDefinition | None = None,
        deps_partitions: Mapping[str, PartitionMapping] | None = None,
        retry: Retry | int | None = None,
        timeout: float | None = None,
        code_version: str | None = None,
        tags: Mapping[str, str] | None = None,
        kind_spec: AssetKind | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidAssetError(repr(fn), "@asset needs a function")
        asset_name = check_asset_name(name, fn)
        check_asset_options(
            asset_name,
            description=description,
            metadata=metadata,
            io_manager=io_manager,
            partitions=partitions,
            timeout=timeout,
            code_version=code_version,
            tags=tags,
        )
        check_dependency_spec(asset_name, "deps", deps)
        check_dependency_spec(asset_name, "optional_deps", optional_deps)
        if kind_spec is not None and not isinstance(kind_spec, AssetKind):
            raise InvalidAssetError(
                asset_name, f"kind_spec= must be an AssetKind, not {kind_spec!r}"
            )
        self.name = asset_name
        self.fn = fn
        self.kind_spec = kind_spec if kind_spec is not None else getattr(fn, _KIND_ATTR, None)
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))
        self.timeout = timeout
        try:
            self.retry = Retry.coerce(retry)
        except (TypeError, ValueError) as exc:
            raise InvalidAssetError(asset_name, f"invalid retry: {exc}") from None
        self.description = description or inspect.getdoc(fn)
        self.metadata = dict(metadata or {})
        self.io_manager = io_manager
        self.partitions = partitions
        self.tags = dict(tags or {})
        self.user_code_version = code_version
        given_optional: object = optional_deps
        if given_optional is None:
            optional_deps = ()
        elif isinstance(optional_deps, str | AssetDef):
            optional_deps = (optional_deps,)
        given_deps: object = deps
        if given_deps is None:
            deps = ()
        self._params: dict[str, Any] = {
            "deps": deps,
            "optional_deps": tuple(optional_deps),
            "deps_partitions": deps_partitions,
        }
        self._analyse(deps, optional_deps)
        self.partition_mappings = dependency_mappings(self, deps_partitions)
        kind_print = self.kind_spec.fingerprint() if self.kind_spec is not None else ""
        self.code_version = code_version or (
            code_fingerprint(fn)
            + (
                hashlib.blake2b(kind_print.encode(), digest_size=4).hexdigest()
                if kind_print
                else ""
            )
        )
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__

    # -- definition ------------------------------------------------------------------

    def _analyse(
        self,
        deps: Sequence[str | AssetDef[..., Any]] | Mapping[str, str | AssetDef[..., Any]],
        optional_deps: Iterable[str | AssetDef[..., Any]],
    ) -> None:
        def dep_name(value: str | AssetDef[..., Any], option: str = "deps") -> str:
            if isinstance(value, AssetDef):
                return value.name
            if isinstance(value, str) and value:
                return value
            raise InvalidAssetError(
                self.name, f"{option}=: a dependency must be an asset or a name, got {value!r}"
            )

        reserved = self.kind_spec.reserved_params if self.kind_spec is not None else frozenset()
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError) as exc:
            raise InvalidAssetError(
                self.name, f"cannot read the function's signature: {exc}"
            ) from None
        mapping: dict[str, str] = {}
        listed: list[str] = []
        if isinstance(deps, Mapping):
            mapping = {param: dep_name(dep) for param, dep in deps.items()}
        elif isinstance(deps, str | AssetDef):
            listed = [dep_name(deps)]
        else:
            listed = [dep_name(dep) for dep in deps]

        inputs: dict[str, str] = {}
        defaults: dict[str, Any] = {}
        context_param: str | None = None
        for param in signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise InvalidAssetError(
                    self.name, f"*{param.name} parameters are not supported; name each input"
                )
            if param.kind is param.POSITIONAL_ONLY:
                raise InvalidAssetError(
                    self.name,
                    f"parameter {param.name!r} is positional-only; inputs are passed by name",
                )
            if param.name in _CONTEXT_NAMES or _is_context_annotation(param.annotation):
                if context_param is not None:
                    raise InvalidAssetError(self.name, "only one parameter may receive the context")
                context_param = param.name
                continue
            if param.name in reserved:
                continue
            inputs[param.name] = mapping.get(param.name, param.name)
            if param.default is not param.empty:
                defaults[param.name] = param.default
        unknown_params = set(mapping) - set(inputs)
        if unknown_params:
            raise InvalidAssetError(
                self.name,
                f"deps names parameters the function does not have: {sorted(unknown_params)}",
            )
        input_assets = set(inputs.values())
        ordering = tuple(
            dict.fromkeys(d for d in listed if d not in input_assets and d not in inputs)
        )
        # A listed name that equals a parameter is that parameter's dependency.
        optional: set[str] = set()
        for dep in optional_deps:
            dep_str = dep_name(dep, "optional_deps")
            if dep_str in inputs:
                optional.add(inputs[dep_str])
            elif dep_str in input_assets or dep_str in ordering:
                optional.add(dep_str)
            else:
                raise InvalidAssetError(
                    self.name, f"optional_deps names {dep_str!r}, which is not one of its inputs"
                )
        extra = self.kind_spec.extra_deps() if self.kind_spec is not None else ()
        owned = self.kind_spec.owned_deps() if self.kind_spec is not None else ()
        if self.name in input_assets or self.name in ordering:
            raise InvalidAssetError(self.name, "an asset cannot depend on itself")
        self.inputs = inputs
        self.defaults = defaults
        self.context_param = context_param
        self.optional = frozenset(optional)
        self.ordering_deps = tuple(dict.fromkeys((*ordering, *extra)))
        self.deps = tuple(dict.fromkeys((*inputs.values(), *self.ordering_deps, *owned)))

    @property
    def kind(self) -> str:
        """The asset's kind: ``"asset"`` for a plain one, else its plugin's kind name."""
        return self.kind_spec.kind if self.kind_spec is not None else "asset"

    @property
    def owned_deps(self) -> tuple[str, ...]:
        """Dependencies its coordinator materializes itself (see :meth:`AssetKind.owned_deps`)."""
        return self.kind_spec.owned_deps() if self.kind_spec is not None else ()

    @property
    def scheduled_deps(self) -> tuple[str, ...]:
        """The dependencies a run completes before this asset starts (owned ones excluded)."""
        owned = self.kind_spec.owned_deps() if self.kind_spec is not None else ()
        if not owned and not self.partition_mappings:
            return self.deps
        # A dependency read through a partition mapping runs for its own partitions.
        mapped = self.partition_mappings
        return tuple(d for d in self.deps if d not in owned and d not in mapped)

    def replace(self, **changes: Any) -> AssetDef[P, R]:
        """A copy of this asset with some options changed (``name``, ``retry``, ``kind_spec``…).

        The code version is recomputed unless ``code_version`` was given.
        """
        options: dict[str, Any] = {
            "name": self.name,
            "deps": self._params["deps"],
            "optional_deps": self._params["optional_deps"],
            "description": self.description,
            "metadata": self.metadata,
            "io_manager": self.io_manager,
            "partitions": self.partitions,
            "deps_partitions": self._params["deps_partitions"],
            "retry": self.retry,
            "timeout": self.timeout,
            "code_version": self.user_code_version,
            "tags": self.tags,
            "kind_spec": self.kind_spec,
        }
        options.update(changes)
        fn = options.pop("fn", self.fn)
        return AssetDef(fn, **options)

    # -- behaviour -------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | Awaitable[R]:
        """Call the function directly (no runtime, no storage): handy in unit tests."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "" if self.kind_spec is None else f", kind={self.kind!r}"
        deps = f", deps={list(self.deps)}" if self.deps else ""
        return f"<AssetDef {self.name!r}{kind}{deps}>"

    def __get__(self, instance: object, owner: type | None = None) -> AssetDef[P, R]:
        return self


@overload
def asset(fn: Callable[P, Awaitable[R]], /) -> AssetDef[P, R]: ...
@overload
def asset(fn: Callable[P, R], /) -> AssetDef[P, R]: ...
@overload
def asset(
    *,
    name: str | None = None,
    deps: Sequence[str | AssetDef[..., Any]] | Mapping[str, str | AssetDef[..., Any]] = (),
    optional_deps: Iterable[str | AssetDef[..., Any]] = (),
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    io_manager: str | None = None,
    partitions: PartitionsDefinition | None = None,
    deps_partitions: Mapping[str, PartitionMapping] | None = None,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    code_version: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Callable[[Callable[P, R]], AssetDef[P, R]]: ...
def asset(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    deps: Sequence[str | AssetDef[..., Any]] | Mapping[str, str | AssetDef[..., Any]] = (),
    optional_deps: Iterable[str | AssetDef[..., Any]] = (),
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    io_manager: str | None = None,
    partitions: PartitionsDefinition | None = None,
    deps_partitions: Mapping[str, PartitionMapping] | None = None,
    retry: Retry | int | None = None,
    timeout: float | None = None,
    code_version: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """Declare an asset: a named value computed by the decorated function.

    Works bare (``@asset``) or with options (``@asset(retry=Retry(attempts=3))``). A
    parameter named ``ctx`` or ``context`` (or annotated :class:`Context`) receives the
    context; every other parameter is an input, filled with the value of the asset of the
    same name. Async functions run on the event loop, plain ones in a worker thread.

    :param name: the asset's name (default: the function's name)
    :param deps: extra dependencies: names (or assets) that must be materialized first, or a
        mapping of parameter name to asset name for inputs whose asset name is not an identifier
    :param optional_deps: inputs that may be missing or skipped; the parameter then gets its
        default, or ``None``
    :param description: a description (default: the docstring)
    :param metadata: static metadata, kept on the definition and visible to IO managers
    :param io_manager: the registered IO manager that stores the value (default: the runtime's)
    :param partitions: the asset's partitions (``DailyPartitions(...)``, …)
    :param deps_partitions: dependency (asset or parameter name) → the
        :class:`~flowstone.PartitionMapping` saying which of its partitions each partition
        of this asset reads (default: the same one)
    :param retry: a :class:`Retry` policy, or a number of attempts
    :param timeout: seconds an attempt may take before it is cancelled and counted as failed
        (a plain function's worker thread is then abandoned: it runs on in the background)
    :param code_version: the version of the asset's logic; default: a fingerprint of the code
    :param tags: string tags, for selection and display
    :return: an :class:`AssetDef`
    :raises InvalidAssetError: the function or the options cannot make an asset
    """
    options: dict[str, Any] = {
        "name": name,
        "deps": deps,
        "optional_deps": optional_deps,
        "description": description,
        "metadata": metadata,
        "io_manager": io_manager,
        "partitions": partitions,
        "deps_partitions": deps_partitions,
        "retry": retry,
        "timeout": timeout,
        "code_version": code_version,
        "tags": tags,
    }
    if fn is not None:
        if isinstance(fn, AssetDef):
            return fn.replace(**{k: v for k, v in options.items() if v not in (None, ())})
        return AssetDef(fn, **options)

    def decorate(inner: Callable[..., Any]) -> AssetDef[..., Any]:
        if isinstance(inner, AssetDef):
            return inner.replace(**{k: v for k, v in options.items() if v not in (None, ())})
        return AssetDef(inner, **options)

    return decorate
