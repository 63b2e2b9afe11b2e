"""OpenTelemetry traces and metrics for flowstone runs: ``OTelSink``.

::

    from flowstone.ext.otel import OTelSink

    rt = fs.Runtime(event_sinks=[OTelSink()])   # or event_sinks=["otel"]

The sink turns lifecycle events into spans and metrics through the OpenTelemetry **API**
only: it uses the global tracer and meter providers (or the ones it is given) and never
installs one, so the application decides where telemetry goes.

Spans (attributes under ``flowstone.*``; never an argument or a value):

- ``flowstone.run`` per run, a child of the span current where the run started (a web
  request's span, say); ``flowstone.materialize {asset}`` per asset as its child;
  ``flowstone.scatter {asset}`` per scatter as the asset's child, with item counts;
  ``flowstone.branch {branch}`` per branch of a parallel asset; ``flowstone.gate {asset}``
  while a gate waits. Retries and route decisions are span events of the asset's span.
  Failures set status ``ERROR``, ``error.type`` and record the exception.
- The run's trace context is stored with the run (the ``flowstone.traceparent`` tag of its
  :class:`~flowstone.RunRecord`): a run resumed later, in any process, continues the same
  trace, its run span a child of the first attempt's run span with a link to it. What was
  done before is not emitted again.

Metrics (no run id or partition labels): ``flowstone.runs`` (counter; ``outcome``),
``flowstone.materializations`` (counter; ``asset``, ``outcome``),
``flowstone.materialization.duration`` (histogram, seconds; ``asset``, ``outcome``),
``flowstone.scatter.items`` (counter; ``outcome``), ``flowstone.gates.open`` (up-down
counter).

Gates (:mod:`flowstone.ext.gates`): a gate opens at ``GateOpened`` and closes at
``GateResolved``, ``GateExpired`` or ``GateCancelled``. Each open gate is a
``flowstone.gate {asset}`` span under its asset's span (ended when the run stops while it
waits, with status ``waiting``) and counts once in ``flowstone.gates.open``.

Needs the ``otel`` extra: ``pip install 'flowstone[otel]'``.
"""

from __future__ import annotations

try:
    import opentelemetry.trace as _trace  # noqa: F401 - fail early with the install hint
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    from flowstone import MissingExtraError

    raise MissingExtraError("flowstone.ext.otel", "opentelemetry-api", "otel") from _exc

from ._context import TRACEPARENT_TAG as TRACEPARENT_TAG
from ._context import TRACESTATE_TAG as TRACESTATE_TAG
from ._sink import OTelSink as OTelSink

__all__ = ("TRACEPARENT_TAG", "TRACESTATE_TAG", "OTelSink")

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "._"):
        _obj.__module__ = __name__
del _name, _obj
