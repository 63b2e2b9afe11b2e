"""The context an asset function receives: who, where, which attempt, and its resources."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["AssetLogger", "Context", "Resources", "current_context"]

_logger = logging.getLogger("flowstone")
_C = TypeVar("_C", bound="Context")


class Resources(Mapping[str, Any]):
    """Read-only mapping of resources, also readable as attributes: ``ctx.resources.shop``."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, Any] = dict(items or {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            available = ", ".join(sorted(self._items)) or "none"
            raise AttributeError(
                f"no resource named {name!r} (available: {available}); pass it with "
                f"resources={{{name!r}: ...}} to materialize() or Runtime()"
            ) from None

    def __getitem__(self, name: str) -> Any:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Resources({sorted(self._items)})"

    def merged(self, other: Mapping[str, Any] | None) -> Resources:
        """A new mapping with ``other`` layered over these resources."""
        if not other:
            return self
        return Resources({**self._items, **other})


class AssetLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.log``: logs to the ``flowstone`` logger with the asset's fields in the message.

    The fields (``asset``, ``partition``, ``run_id``, a scatter item's ``scatter_key``, and
    any ``extra=`` of the call) lead the message as ``[asset=… run=…]``, so the default
    log format shows them, and are set on the record as attributes for formatters and
    handlers that read them. Every record also carries them as one mapping,
    ``record.flowstone`` (``run_id``, ``pipeline``, ``asset``, ``partition``, ``attempt``
    and a plugin's fields), which :class:`flowstone.logging.JSONFormatter` writes out.

    :param structured: the ``record.flowstone`` mapping
    """

    def __init__(
        self,
        logger: logging.Logger,
        extra: Mapping[str, object] | None = None,
        structured: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(logger, extra)
        self.structured: Mapping[str, object] = structured or {}

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log ``msg`` at ``level``, led by the fields (see the class)."""
        if not self.isEnabledFor(level):
            return
        given = kwargs.get("extra")
        fields = {**(self.extra or {}), **given} if given else dict(self.extra or {})
        kwargs["extra"] = {**fields, "flowstone": self.structured}
        shown = " ".join(
            f"{'run' if name == 'run_id' else name}={value}"
            for name, value in fields.items()
            if value is not None
        )
        if args:  # the message is %-formatted: keep a % in a field as it is
            shown = shown.replace("%", "%%")
        # One frame more than the adapter's own: the record names the caller's line.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        self.logger.log(level, f"[{shown}] {msg}", *args, **kwargs)


class Context:
    """What an asset function knows about its invocation.

    A parameter named ``ctx`` or ``context``, or annotated ``fs.Context``, receives it.

    :ivar asset: the asset's name
    :ivar partition: the partition key, or ``None`` for an unpartitioned asset
    :ivar run_id: the run's id
    :ivar pipeline: the name of the run's pipeline, or ``None``
    :ivar attempt: the attempt number, from 1
    :ivar resources: the resources, as ``ctx.resources.<name>``
    :ivar log: a logger (:class:`AssetLogger`) whose lines start with the asset, partition
        and run

    Plugins extend it by subclassing: the scatter plugin gives each item an
    :class:`~flowstone.ext.scatter.ItemContext`, which sets the attributes below; on any
    other context they are ``None``.

    :ivar scatter_key: inside a scatter, the key of the item being processed
    :ivar batch_index: inside a batched scatter, the batch's position (0-based)
    :ivar batch_count: inside a batched scatter, how many batches there are (when known)
    :ivar batch_input: inside a batched scatter, the batch's shared input
    """

    __slots__ = (
        "_log",
        "_metadata",
        "_runtime",
        "asset",
        "attempt",
        "partition",
        "pipeline",
        "resources",
        "run_id",
    )

    # Read-only defaults; the scatter plugin's item context holds them in slots of its own.
    scatter_key: str | None = None
    batch_index: int | None = None
    batch_count: int | None = None
    batch_input: Any = None

    def __init__(
        self,
        *,
        asset: str,
        partition: str | None,
        run_id: str,
        attempt: int = 1,
        resources: Resources | None = None,
        runtime: Runtime | None = None,
        metadata: dict[str, Any] | None = None,
        pipeline: str | None = None,
    ) -> None:
        self.asset = asset
        self.pipeline = pipeline
        self.partition = partition
        self.run_id = run_id
        self.attempt = attempt
        self.resources = resources if resources is not None else Resources()
        self._runtime = runtime
        self._metadata: dict[str, Any] = metadata if metadata is not None else {}
        self._log: AssetLogger | None = None

    @property
    def log(self) -> AssetLogger:
        """A logger whose lines start with (and whose records carry) the asset, partition,
        run id and what a plugin's context adds (a scatter item's key)."""
        if self._log is None:
            self._log = AssetLogger(_logger, self._fields(), self.log_fields())
        return self._log

    def log_fields(self) -> dict[str, object]:
        """What every log record of this invocation carries as ``record.flowstone``: the run
        id, pipeline, asset, partition, attempt and what a plugin's context adds (a scatter
        item's key). Never a value or an argument."""
        fields: dict[str, object] = {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "asset": self.asset,
            "partition": self.partition,
            "attempt": self.attempt,
        }
        for name, value in self._fields().items():
            fields.setdefault(name, value)
        return fields

    def _fields(self) -> dict[str, object]:
        """What identifies this invocation, for logs and the repr; a subclass adds its own."""
        return {"asset": self.asset, "partition": self.partition, "run_id": self.run_id}

    @property
    def runtime(self) -> Runtime:
        """The runtime executing this asset."""
        if self._runtime is None:
            from .errors import RuntimeStateError

            raise RuntimeStateError("this context is not attached to a runtime")
        return self._runtime

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Metadata added so far; it is saved on the materialization record."""
        return self._metadata

    def add_metadata(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Add metadata (JSON-able values) to this asset's materialization record.

        :param values: a mapping of names to values
        :param more: further names and values
        """
        if values:
            self._metadata.update(values)
        if more:
            self._metadata.update(more)

    def derive(self, cls: type[_C]) -> _C:
        """A context of subclass ``cls`` for the same invocation, for a plugin's contexts.

        It shares this one's asset, partition, run, attempt, resources and metadata (what is
        added through it lands on the asset's record) and has a logger of its own, made on
        first use from its fields; the subclass then sets the attributes it adds. (The
        scatter plugin's item contexts, made once per item, refer to the asset's context
        instead of copying its fields.)
        """
        ctx = object.__new__(cls)
        ctx.asset = self.asset
        ctx.pipeline = self.pipeline
        ctx.partition = self.partition
        ctx.run_id = self.run_id
        ctx.attempt = self.attempt
        ctx.resources = self.resources
        ctx._runtime = self._runtime
        ctx._metadata = self._metadata
        ctx._log = None
        return ctx

    def __repr__(self) -> str:
        fields = self._fields()
        fields["attempt"] = self.attempt
        parts = [f"{name}={value!r}" for name, value in fields.items() if value is not None]
        return f"{type(self).__name__}({', '.join(parts)})"


_current: ContextVar[Context | None] = ContextVar("flowstone_context", default=None)


def current_context() -> Context:
    """The context of the asset being executed in this task.

    Useful in helpers called from an asset that do not take ``ctx`` themselves.

    :raises RuntimeStateError: outside an asset
    """
    ctx = _current.get()
    if ctx is None:
        from .errors import RuntimeStateError

        raise RuntimeStateError("current_context() is only available inside an asset")
    return ctx
