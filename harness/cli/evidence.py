"""``flywheel-chaos evidence list | show``: the recorded survival evidence."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli.output import out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK, ConfigError


def _directory(args: argparse.Namespace) -> Path:
    from harness.record.evidence import (
        evidence_dir,  # jsonschema: kept off every command's start-up
    )

    return Path(args.dir) if args.dir else evidence_dir()


def _records(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    from harness.record.evidence import record_files

    for path in record_files(directory):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            found.append((path, {"verdict": "unreadable"}))
    return found


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    directory = _directory(args)
    records = _records(directory)
    if args.json:
        print_json(
            [
                {"file": p.name, **{k: r.get(k) for k in ("id", "fault", "verdict", "recorded_at")}}
                for p, r in records
            ]
        )
        return EXIT_OK
    if not records:
        out.print(f"no evidence in {directory}")
        return EXIT_OK
    table = Table(title=f"evidence in {directory}", title_justify="left")
    for column in ("recorded", "fault", "verdict", "longest outage", "record"):
        table.add_column(column)
    colours = {"survived": "green", "not-survived": "red", "aborted": "yellow", "error": "magenta"}
    for path, record in records:
        verdict = record.get("verdict", "?")
        outage = (record.get("prober") or {}).get("longest_outage_ms")
        table.add_row(
            str(record.get("recorded_at", ""))[:19],
            str(record.get("fault", "")),
            f"[{colours.get(verdict, 'white')}]{verdict}[/]",
            f"{outage / 1000:.1f} s" if isinstance(outage, int | float) else "-",
            path.name,
        )
    out.print(table)
    return EXIT_OK


def _find(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The record ``args.record`` names (a file name, stem or id; ``latest``)."""
    directory = _directory(args)
    records = _records(directory)
    if not records:
        raise ConfigError(
            f"no evidence in {directory}",
            "run an experiment first (chaos run experiments/pod-delete.yaml)",
        )
    wanted = args.record
    if wanted == "latest":
        return records[-1]
    matches = [(p, r) for p, r in records if wanted in (p.name, p.stem, r.get("id"))]
    if not matches:
        raise ConfigError(
            f"no evidence record {wanted!r} in {directory}", "see flywheel-chaos evidence list"
        )
    return matches[-1]


def _cmd_show(args: argparse.Namespace, found: tuple[Path, dict[str, Any]] | None = None) -> int:

    path, record = found or _find(args)
    if args.json:
        print_json(record)
        return EXIT_OK
    prober = record.get("prober") or {}
    out.print(f"[bold]{record.get('experiment')}[/]  ({path.name})")
    out.print(
        f"verdict: [bold]{record.get('verdict')}[/]: {'; '.join(record.get('reasons') or [])}"
    )
    out.print(f"fault: {record.get('fault')}  target: {record.get('target')}")
    if prober:
        out.print(
            f"prober: {prober.get('head_samples')} HEAD samples, {prober.get('head_failures')} failed, "
            f"{prober.get('canary_samples')} canaries, {prober.get('canary_failures')} failed; "
            f"longest outage {prober.get('longest_outage_ms', 0) / 1000:.2f} s (budget "
            f"{(prober.get('budget_ms') or 0) / 1000:.0f} s); recovery after the fault "
            f"{prober.get('recovery_after_fault_ms')} ms; errors {prober.get('error_classes')}"
        )
        for window in prober.get("outages", []):
            out.print(
                f"  outage {window['ms'] / 1000:.2f} s{' (still open)' if window.get('open') else ''}: {window.get('errors')}"
                + (
                    f"; first seen at s: {window['first_seen_s']}"
                    if window.get("first_seen_s")
                    else ""
                )
            )
    integrity = record.get("integrity") or {}
    out.print(f"state key unchanged: {integrity.get('state_key_unchanged')}")
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from harness.record.evidence import verify

    directory = _directory(args)
    results = verify(directory)
    bad = [r for r in results if not r.ok]
    if args.json:
        print_json(
            {
                "ok": not bad,
                "records": len(results),
                "problems": [{"record": r.path.name, "problems": r.problems} for r in bad],
            }
        )
    else:
        for result in bad:
            for problem in result.problems:
                out.print(f"[red]TAMPERED[/] {result.path.name}: {problem}")
        if not bad:
            out.print(f"[green]ok[/]: {len(results)} record(s) in {directory}, chain intact")
    return EXIT_FAILED if bad else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.record.report import render_html

    found = _find(args)
    code = _cmd_show(args, found)
    if args.html:
        Path(args.html).write_text(render_html(found[1], found[0].name))
        out.print(f"report written to {args.html}")
    return code


def register_report(sub: Any, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report", parents=[common], help="human report of a run (terminal, or --html FILE)"
    )
    report.add_argument(
        "record", nargs="?", default="latest", help="file name or id (default: the latest)"
    )
    report.add_argument(
        "--html", default=None, metavar="FILE", help="also write one self-contained HTML page"
    )
    report.add_argument(
        "--dir",
        default=None,
        help="evidence directory (default: FLYWHEEL_EVIDENCE_DIR or evidence/)",
    )
    report.set_defaults(handler=_cmd_report)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    evidence = sub.add_parser("evidence", parents=[common], help="recorded survival evidence")
    evidence.add_argument(
        "--dir",
        default=None,
        help="evidence directory (default: FLYWHEEL_EVIDENCE_DIR or evidence/)",
    )
    verbs = evidence.add_subparsers(
        dest="evidence_command", metavar="ACTION", required=True, parser_class=type(evidence)
    )
    listing = verbs.add_parser("list", parents=[common], help="one line per record")
    listing.set_defaults(handler=_cmd_list)
    show = verbs.add_parser("show", parents=[common], help="one record in detail")
    show.add_argument(
        "record", nargs="?", default="latest", help="file name or id (default: the latest)"
    )
    show.set_defaults(handler=_cmd_show)
    check = verbs.add_parser(
        "verify", parents=[common], help="check every record's form, hashes and the chain"
    )
    check.set_defaults(handler=_cmd_verify)
