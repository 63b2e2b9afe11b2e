"""The ``telemetry`` fixture (see ``otel_sdk``)."""

from otel_sdk import telemetry as telemetry
