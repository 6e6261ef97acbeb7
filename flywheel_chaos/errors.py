"""Exit codes, and the errors that carry theirs (as pip's ``status_codes`` and its errors do).

The command line (DESIGN.md): 0 ok / gate green, 1 a check failed / gate red, 2 usage,
configuration or environment error, 3 an unexpected error (a bug: its traceback is written to
a file the error line names), 130 interrupted. An error type says its own code with the class
attribute ``exit_code``; the command line reads that, never the error's module.
"""

from __future__ import annotations

from typing import ClassVar, Final

EXIT_OK: Final = 0
"""Everything passed; the gate is green."""
EXIT_FAILED: Final = 1
"""A check ran and failed; the gate is red (CI reads this as "not proven")."""
EXIT_USAGE: Final = 2
"""Usage, configuration or environment error: nothing was checked."""
EXIT_UNEXPECTED: Final = 3
"""An unexpected exception (a bug, not a verdict): its traceback is in a file."""
EXIT_INTERRUPTED: Final = 130
"""Interrupted (Ctrl-C, SIGINT)."""


class FlywheelError(Exception):
    """An error with a one-line cause, a hint and an exit code."""

    exit_code: ClassVar[int] = EXIT_USAGE

    def __init__(self, cause: str, hint: str = "", details: str = "") -> None:
        super().__init__(cause)
        self.cause = cause
        self.hint = hint
        self.details = details


def exit_code_of(exc: BaseException) -> int | None:
    """The exit code an error type declares (``exit_code``), or None for an unexpected one."""
    code = getattr(type(exc), "exit_code", None)
    return code if isinstance(code, int) else None
