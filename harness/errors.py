"""Errors the command line turns into one line, a hint and an exit code.

Exit codes (DESIGN.md): 0 ok / gate green, 1 a check failed / gate red,
2 usage, configuration or environment error.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class HarnessError(Exception):
    """An error with a one-line cause, a hint and an exit code."""

    exit_code = EXIT_USAGE

    def __init__(self, cause: str, hint: str = "", details: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint
        self.details = details


class ConfigError(HarnessError):
    """Configuration or environment is missing or wrong (exit 2)."""


class CheckFailed(HarnessError):
    """A check ran and failed (exit 1)."""

    exit_code = EXIT_FAILED
