"""``flywheel-chaos gameday``: a suite of experiments as a scheduled game day."""

from __future__ import annotations

import argparse
from typing import Any

from rich.table import Table

from harness.cli.output import err, out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK


def _cmd_gameday(args: argparse.Namespace) -> int:
    from harness.gameday import run_gameday, suite_path

    summary = run_gameday(
        suite_path(args.suite),
        progress=lambda m: None if args.json else err.print(f"[dim]gameday[/] {m}"),
    )
    if args.json:
        print_json(summary)
    else:
        table = Table(
            title=f"game day {summary['suite']} ({summary['seconds']:.0f} s)", title_justify="left"
        )
        for column in ("experiment", "verdict", "seconds", "reasons"):
            table.add_column(column, overflow="fold")
        for result in summary["results"]:
            table.add_row(
                result["experiment"],
                result["verdict"],
                f"{result['seconds']:.0f}",
                "; ".join(result["reasons"]),
            )
        out.print(table)
        if summary["breach"]:
            out.print(f"[red]stopped on a safety breach[/]: {summary['breach']}")
        out.print(f"summary: {summary['summary_file']}")
        if summary["completed"] and not summary["all_passed"]:
            out.print("[red]not every run survived or passed[/]: the game day fails")
    return EXIT_OK if summary["all_passed"] else EXIT_FAILED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos gameday``."""
    parser = sub.add_parser(
        "gameday", parents=[common], help="run a suite of experiments as a scheduled game day"
    )
    parser.add_argument("suite", metavar="SUITE.yaml")
    parser.set_defaults(handler=_cmd_gameday)
