"""``flywheel-chaos gameday``: a suite of experiments as a scheduled game day."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from flywheel_chaos import settings
from harness.cli.output import err, out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK


def _cmd_gameday(args: argparse.Namespace) -> int:
    from harness.gameday import run_gameday, suite_path
    from harness.gameday.suite import runs_setting

    started = time.monotonic()

    def progress(message: str) -> None:
        # live, on stderr, also with --json (stdout stays the one JSON document)
        err.print(f"[dim]gameday {(time.monotonic() - started) / 60:5.1f}m[/] {message}")

    runs = args.runs or settings.FLYWHEEL_GAMEDAY_RUNS.get() or None
    summary = run_gameday(
        suite_path(args.suite or settings.FLYWHEEL_GAMEDAY_SUITE.get()),
        progress=progress,
        runs=runs_setting(runs) if runs else None,
        junit=args.junit,
    )
    if args.json:
        print_json(summary)
    else:
        _print(summary)
    return EXIT_OK if summary["all_passed"] else EXIT_FAILED


def _print(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"game day {summary['suite']} ({summary['seconds']:.0f} s)", title_justify="left"
    )
    for column in ("experiment", "run", "verdict", "seconds", "reasons"):
        table.add_column(column, overflow="fold")
    for result in summary["results"]:
        table.add_row(
            result["experiment"],
            f"{result['run']}/{result['of']}",
            result["verdict"],
            f"{result['seconds']:.0f}",
            "; ".join(result["reasons"]),
        )
    out.print(table)
    if summary["breach"]:
        out.print(f"[red]stopped on a safety breach[/]: {summary['breach']}")
    if summary["guard"] is not None:
        out.print(f"guard: {'ok' if summary['guard']['ok'] else '[red]failed[/]'}")
    gate = summary["gate"]
    out.print(f"gate: {gate['mode']} ({gate['reason']})")
    out.print(f"summary: {summary['summary_file']}")
    if summary["completed"] and not summary["all_passed"]:
        out.print("[red]not every run survived or passed[/]: the game day fails")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos gameday``."""
    parser = sub.add_parser(
        "gameday",
        parents=[common],
        help="run a suite of experiments as a scheduled game day",
        description=(
            "Run a suite under one cluster lease, then the gate; the game day passes when every "
            "run survived or passed. Shipped suites: weekly, ci-short."
        ),
    )
    parser.add_argument(
        "suite",
        metavar="SUITE",
        nargs="?",
        default=None,
        help="a suite file or a shipped suite's name (default: FLYWHEEL_GAMEDAY_SUITE, weekly)",
    )
    parser.add_argument(
        "--runs",
        default=None,
        metavar="N|policy",
        help="runs of each experiment: a number, or policy (as many as the gate policy wants)",
    )
    parser.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write JUnit XML: one testcase per run and per gate row",
    )
    parser.set_defaults(handler=_cmd_gameday)
