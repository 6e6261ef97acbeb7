"""``flywheel-chaos recover``: undo what dead runs left."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.output import add_command, out, print_json
from harness.errors import EXIT_OK


def _cmd_recover(args: argparse.Namespace) -> int:
    from harness.recover import recover

    done = recover(force=args.force, dry_run=args.dry_run)
    if args.json:
        print_json({"dry_run": args.dry_run, ("planned" if args.dry_run else "undone"): done})
    elif done:
        for line in done:
            out.print(line if args.dry_run else f"recovered {line}")
    else:
        out.print("nothing to recover: every recorded fault was undone")
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos recover``."""
    parser = add_command(
        sub,
        common,
        "recover",
        help="undo any fault whose rollback did not run (from persisted intent)",
        description="Undo every change recorded in intent files and node annotations; safe to run "
        "twice. Refuses (exit 1) while a live run holds the cluster lease, unless --force.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be undone; change nothing"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="undo even while a live run holds the lease (it then loses the lease and aborts)",
    )
    parser.set_defaults(handler=_cmd_recover)
