"""How every command prints: rich consoles, JSON on stdout, usage errors in one line.

Every command module imports these; none imports :mod:`harness.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from harness.errors import EXIT_USAGE

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in the same one-line-plus-hint form."""

    def error(self, message: str) -> NoReturn:
        err.print(f"[bold red]error:[/] {message}")
        err.print(f"[dim]hint:[/] run '{self.prog} --help' for usage")
        raise SystemExit(EXIT_USAGE)


def print_json(document: Any) -> None:
    """``document`` as indented JSON on stdout (what ``--json`` prints)."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def add_command(
    sub: Any, common: argparse.ArgumentParser, name: str, help: str, description: str = ""
) -> argparse.ArgumentParser:
    """A subcommand that takes the common flags (``--json``, ``--debug``, ``-v``)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=help, description=description or None
    )
    return parser
