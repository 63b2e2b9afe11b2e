"""What the materializer hands a coordinator: one asset's invocation inside a run.

Coordinators (scatter, parallel, routing, …) receive an :class:`Invocation`. Through it they
call the asset's function (as often as they need, with extra arguments such as ``item``),
reach the run (:class:`RunHandle`) to materialize other assets of the same run, read
outcomes and emit events.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .context import Context, _current
from .deadline import call_with_timeout, run_in_thread
from .errors import AssetTimeoutError
from .records import MaterializationRecord, Status

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from .assets import AssetDef
    from .checks import CheckRecord
    from .events import Event
    from .pipeline import Pipeline
    from .runtime import Runtime

__all__ = ["AssetOutcome", "Invocation", "RunHandle"]

T = TypeVar("T")


@dataclass(slots=True)
class AssetOutcome:
    """How one asset ended in a run.

    :param value: the value, when it succeeded
    :param error: the failure, when it failed
    :param reason: why it was skipped, when it was
    """

    asset: str
    status: Status
    value: Any = None
    error: BaseException | None = None
    reason: str | None = None
    record: MaterializationRecord | None = None
    data_version: str | None = None
    #: The results of its checks in the run (see ``@fs.check``).
    checks: tuple[CheckRecord, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether it succeeded."""
        return self.status is Status.SUCCEEDED

    @property
    def failed_checks(self) -> tuple[str, ...]:
        """The ``error`` checks its value failed in the run (its dependents are blocked)."""
        return tuple(c.check for c in self.checks if c.blocking)


class RunHandle(Protocol):
    """The run an invocation belongs to, as coordinators see it."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    @property
    def partition(self) -> str | None:
        """The run's partition key."""
        ...

    @property
    def runtime(self) -> Runtime:
        """The runtime executing the run."""
        ...

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the run materializes from."""
        ...

    @property
    def force(self) -> bool:
        """Whether the run recomputes current values and redoes recorded decisions."""
        ...

    async def materialize(self, names: Iterable[str]) -> dict[str, AssetOutcome]:
        """Materialize assets (with their upstream) inside this run and return their outcomes.

        Assets the run already finished are not run again; assets another part of the run is
        computing are awaited, not duplicated. Cancelling the caller cancels what it started.
        """
        ...

    def outcome(self, name: str) -> AssetOutcome | None:
        """The outcome of an asset in this run, once it is terminal."""
        ...

    def emit(self, event: Event) -> None:
        """Send an event to the runtime's sinks."""
        ...

    async def value(self, name: str) -> Any:
        """The value of an asset that succeeded in this run (loaded if it was reused).

        :raises KeyError: the asset has not succeeded in this run
        """
        ...


class Invocation:
    """One execution of one asset: its definition, context, resolved inputs and run.

    :ivar asset: the asset's definition
    :ivar context: the context of this attempt
    :ivar inputs: the input values by parameter name (optional ones defaulted)
    :ivar input_versions: the data version of each input asset
    :ivar run: the run this invocation belongs to
    """

    __slots__ = ("asset", "context", "input_versions", "inputs", "run")

    def __init__(
        self,
        asset: AssetDef[..., Any],
        context: Context,
        inputs: Mapping[str, Any],
        run: RunHandle,
        input_versions: Mapping[str, str] | None = None,
    ) -> None:
        self.asset = asset
        self.context = context
        self.inputs = inputs
        self.run = run
        self.input_versions = input_versions or {}

    def arguments(self, context: Context | None = None, /, **extra: Any) -> dict[str, Any]:
        """The keyword arguments a call of the function gets: inputs, context, ``extra``."""
        kwargs = dict(self.inputs)
        if self.asset.context_param is not None:
            kwargs[self.asset.context_param] = context if context is not None else self.context
        if extra:
            kwargs.update(extra)
        return kwargs

    async def call(self, context: Context | None = None, /, **extra: Any) -> Any:
        """Call the asset's function with its inputs, the context and ``extra`` arguments.

        Async functions are awaited on the loop; plain ones run in a worker thread (which is
        abandoned, left to finish in the background, when the attempt's timeout passes).

        :param context: the context to pass (default: the invocation's)
        :param extra: arguments for reserved parameters, such as ``item=``
        """
        ctx = context if context is not None else self.context
        asset = self.asset
        # Without a context parameter or extra arguments the inputs are the arguments (the
        # call unpacks them into a dict of its own).
        kwargs = (
            self.inputs
            if asset.context_param is None and not extra
            else self.arguments(ctx, **extra)
        )
        token = _current.set(ctx)
        try:
            if asset.is_async:
                return await asset.fn(**kwargs)
            return await run_in_thread(functools.partial(asset.fn, **kwargs))
        finally:
            _current.reset(token)

    async def within_timeout(
        self,
        work: Callable[[], Awaitable[T]],
        timeout: float | None,  # noqa: ASYNC109 - the asset's own limit, which names it
    ) -> T:
        """``await work()``, failed with :class:`AssetTimeoutError` (naming this attempt)
        after ``timeout`` seconds; ``None`` waits as long as it takes.

        The materializer applies an asset's ``timeout=`` this way, and so does a coordinator
        whose asset kind applies the timeout itself (to the part of its work that counts).
        """
        if timeout is None:
            return await work()
        ctx = self.context
        return await call_with_timeout(
            timeout,
            work,
            functools.partial(
                AssetTimeoutError, self.asset.name, ctx.partition, ctx.run_id, ctx.attempt, timeout
            ),
        )
