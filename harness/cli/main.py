"""``flywheel-chaos``: the operator's command line.

Exit 0 = ok / gate green, 1 = a check failed / gate red, 2 = usage,
configuration or environment error (one line naming the cause, then a hint),
3 = an unexpected error (a bug: one line naming the file its traceback is in),
130 = interrupted. ``--json`` prints machine-readable results on stdout;
tracebacks on the terminal only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from flywheel_chaos import __version__
from flywheel_chaos.errors import exit_code_of
from harness.cli import bakeoff as bakeoff_command
from harness.cli import evidence as evidence_commands
from harness.cli import experiments as experiments_command
from harness.cli import gameday as gameday_command
from harness.cli import gate as gate_command
from harness.cli import guard as guard_command
from harness.cli import lab as lab_commands
from harness.cli import recover as recover_command
from harness.cli.crash import write_traceback
from harness.cli.output import Parser, err
from harness.errors import (
    EXIT_INTERRUPTED,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    HarnessError,
)

# ------------------------------------------------------------------ parser ---


def build_parser() -> argparse.ArgumentParser:
    def flags(default: object) -> Parser:
        shared = Parser(add_help=False)
        shared.add_argument(
            "--json", action="store_true", default=default, help="machine-readable output on stdout"
        )
        shared.add_argument(
            "--debug", action="store_true", default=default, help="show tracebacks and debug logs"
        )
        shared.add_argument(
            "-v", "--verbose", action="store_true", default=default, help="log every attempt"
        )
        return shared

    # the flags work before or after the command: below the top level they
    # default to SUPPRESS, so they never reset what was given before
    common = flags(argparse.SUPPRESS)
    parser = Parser(
        prog="flywheel-chaos",
        description="Prove that an S3 OpenTofu state authority survives the faults the HA gate names.",
        parents=[flags(False)],
    )
    parser.add_argument("--version", action="version", version=f"flywheel-chaos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    for command in (
        guard_command,
        gate_command,
        bakeoff_command,
        gameday_command,
        recover_command,
        experiments_command,
    ):
        command.register(sub, common)
    evidence_commands.register(sub, common)
    evidence_commands.register_report(sub, common)
    evidence_commands.register_rca(sub, common)
    lab_commands.register(sub, common)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    from rich.logging import RichHandler

    logging.basicConfig(
        level=level,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=args.debug)],
    )
    if not args.debug:
        for noisy in ("botocore", "urllib3", "kubernetes"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HarnessError as exc:
        if args.debug:
            err.print_exception()
        err.print(f"[bold red]error:[/] {exc.cause}")
        if exc.details:
            err.print(exc.details, markup=False)
        if exc.hint:
            err.print(f"[dim]hint:[/] {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[bold red]error:[/] interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            err.print_exception()
        code = exit_code_of(exc)
        if code is not None:  # a library error that carries its own exit code
            err.print("[bold red]error:[/]", end=" ")
            err.print(str(exc), markup=False)
            hint = getattr(exc, "hint", "")
            if hint and f"hint: {hint}" not in str(exc):
                err.print(f"[dim]hint:[/] {hint}")
            return code
        where = write_traceback(exc)  # unexpected: a bug, not a verdict
        err.print("[bold red]error:[/]", end=" ")
        err.print(f"unexpected {type(exc).__name__}: {exc} (traceback: {where})", markup=False)
        err.print("[dim]hint:[/] this is a bug in flywheel-chaos; the file above says where")
        return EXIT_UNEXPECTED


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
