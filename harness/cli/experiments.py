"""``flywheel-chaos experiments list | path NAME``: the shipped experiments, wherever installed."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from harness import assets
from harness.cli.output import add_command, out, print_json
from harness.errors import EXIT_OK, ConfigError


def _cmd_list(args: argparse.Namespace) -> int:
    found = []
    for path in sorted(assets.experiments().glob("*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        found.append({"name": path.stem, "title": document.get("title", ""), "path": str(path)})
    if args.json:
        print_json(found)
    else:
        for item in found:
            out.print(f"{item['name']:24} {item['title']}")
    return EXIT_OK


def _cmd_path(args: argparse.Namespace) -> int:
    path = assets.experiment(args.name)
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(assets.experiments().glob("*.yaml")))
        raise ConfigError(f"no shipped experiment named {args.name!r}", f"one of: {known}")
    print(path)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos experiments``."""
    parser = add_command(sub, common, "experiments", help="the shipped experiments (list, path)")
    commands = parser.add_subparsers(dest="experiments_command", metavar="ACTION")
    listing = commands.add_parser("list", parents=[common], help="every shipped experiment")
    listing.set_defaults(handler=_cmd_list)
    where = commands.add_parser("path", parents=[common], help="the file of one (for chaos run)")
    where.add_argument("name", metavar="NAME")
    where.set_defaults(handler=_cmd_path)
