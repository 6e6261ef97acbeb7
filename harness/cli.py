"""``flywheel-chaos``: the operator's command line.

Exit 0 = ok / gate green, 1 = a check failed / gate red, 2 = usage,
configuration or environment error (one line naming the cause, then a hint).
``--json`` prints machine-readable results on stdout; tracebacks only with
``--debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, HarnessError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in the same one-line-plus-hint form."""

    def error(self, message: str) -> NoReturn:
        err.print(f"[bold red]error:[/] {message}")
        err.print(f"[dim]hint:[/] run '{self.prog} --help' for usage")
        raise SystemExit(EXIT_USAGE)


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


# ------------------------------------------------------------------ guard ---


def _cmd_guard(args: argparse.Namespace) -> int:
    from harness.guard import resolve_authority, run_guard

    authority = resolve_authority(
        endpoint=args.endpoint,
        bucket=args.bucket,
        key=args.key,
        region=args.region,
        timeout_s=args.timeout,
        backend_config=args.backend_config,
    )
    report = run_guard(authority)
    if args.json:
        _print_json(report.as_json())
    else:
        table = Table(
            title=f"state authority {authority.endpoint}  s3://{authority.bucket}/{authority.key}",
            title_justify="left",
        )
        table.add_column("check")
        table.add_column("result")
        table.add_column("ms", justify="right")
        table.add_column("detail", overflow="fold")
        hints: list[str] = []
        for check in report.checks:
            if check["ok"]:
                detail = ", ".join(
                    f"{k}={v}" for k, v in (check["result"] or {}).items() if k not in {"sha256"}
                )
                table.add_row(check["name"], "[green]ok[/]", f"{check['duration_ms']:.0f}", detail)
            else:
                error = check["error"]
                table.add_row(
                    check["name"],
                    f"[red]{error['class']}[/]",
                    f"{check['duration_ms']:.0f}",
                    f"{error['code']}: {error['detail']}",
                    style=None,
                )
                if error["hint"] not in hints:
                    hints.append(error["hint"])
        out.print(table)
        for hint in hints:
            out.print(f"[dim]hint:[/] {hint}")
        verdict = (
            "[green]PASS[/]: safe to mutate" if report.ok else "[red]FAIL[/]: do not mutate state"
        )
        out.print(f"guard {verdict} ({report.duration_ms:.0f} ms)")
    return EXIT_OK if report.ok else EXIT_FAILED


# ---------------------------------------------------------------- recover ---


def _cmd_recover(args: argparse.Namespace) -> int:
    from harness.recover import recover

    done = recover()
    if args.json:
        _print_json({"undone": done})
    elif done:
        for line in done:
            out.print(f"recovered {line}")
    else:
        out.print("nothing to recover: every recorded fault was undone")
    return EXIT_OK


# ------------------------------------------------------------------ parser ---


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    common.add_argument("-v", "--verbose", action="store_true", help="log every attempt")

    parser = _Parser(
        prog="flywheel-chaos",
        description="Prove that an S3 OpenTofu state authority survives the faults the HA gate names.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    guard = sub.add_parser(
        "guard",
        parents=[common],
        help="pre-mutation deep check of the state authority (fail closed)",
        description="Run every state-authority check; exit 0 only if all pass.",
    )
    guard.add_argument("--endpoint", default="", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3)")
    guard.add_argument(
        "--bucket", default="", help="state bucket (default: TOFU_STATE_BUCKET or tofu-state)"
    )
    guard.add_argument(
        "--key", default="", help="protected state key, only ever HEADed (default: TOFU_STATE_KEY)"
    )
    guard.add_argument("--region", default="", help="region (default: AWS_REGION or us-east-1)")
    guard.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="bound of each check (default 5)",
    )
    guard.add_argument(
        "--backend-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="read bucket, key, region, endpoint and path style from an OpenTofu S3 backend file",
    )
    guard.set_defaults(handler=_cmd_guard)

    recover = sub.add_parser(
        "recover",
        parents=[common],
        help="undo any fault whose rollback did not run (from persisted intent)",
        description="Undo every change recorded in intent files and node annotations; safe to run twice.",
    )
    recover.set_defaults(handler=_cmd_recover)

    from harness import cli_evidence, cli_lab

    cli_evidence.register(sub, common)
    cli_lab.register(sub, common)
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
        return 130
    except Exception as exc:  # an unexpected failure: one line, traceback with --debug
        if args.debug:
            err.print_exception()
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", markup=False)
        err.print("[dim]hint:[/] run again with --debug for the traceback")
        return EXIT_FAILED


def entry() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
