"""The scheduler's errors."""

from __future__ import annotations

from flowstone import ConfigurationError

__all__ = ["ScheduleDefinitionError", "UnknownScheduleError"]


class ScheduleDefinitionError(ConfigurationError):
    """A schedule or sensor is defined wrongly (the message names it and the setting)."""


class UnknownScheduleError(ConfigurationError, KeyError):
    """No schedule or sensor of the scheduler has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the scheduler has no schedule or sensor named {name!r}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])
