"""Errors the command line turns into one line, a hint and an exit code.

Exit codes (:mod:`flywheel_chaos.errors`, as DESIGN.md has them): 0 ok / gate green, 1 a
check failed / gate red, 2 usage, configuration or environment error, 3 unexpected error
(a bug; the traceback is in a file), 130 interrupted.
"""

from __future__ import annotations

from flywheel_chaos.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    FlywheelError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNEXPECTED",
    "EXIT_USAGE",
    "CheckFailed",
    "ConfigError",
    "HarnessError",
]


class HarnessError(FlywheelError):
    """An error with a one-line cause, a hint and an exit code (2 unless a subclass says)."""


class ConfigError(HarnessError):
    """Configuration or environment is missing or wrong (exit 2)."""


class CheckFailed(HarnessError):
    """A check ran and failed (exit 1)."""

    exit_code = EXIT_FAILED
