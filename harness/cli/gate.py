"""``flywheel-chaos gate``: the HA readiness gate, its mode and its table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from harness.cli.output import add_command, out, print_json
from harness.errors import EXIT_OK

if TYPE_CHECKING:
    from harness.record.gate import GateReport

__all__ = ["gate_mode", "register"]


def gate_mode(report: GateReport, expect_interim: bool) -> tuple[str, int, str]:
    """The gate's mode, exit code and why (:func:`harness.record.gate.gate_mode`)."""
    from harness.record.gate import gate_mode as decide

    return decide(report, expect_interim)


def _cmd_gate(args: argparse.Namespace) -> int:
    from harness.guard import resolve_authority
    from harness.record.gate import evaluate, gate_cases, gate_document, gate_mode, load_policy
    from harness.record.policy import validated_max_age
    from harness.record.signing import load_verifier
    from harness.record.store import load_store

    report = evaluate(
        resolve_authority(),
        policy=load_policy(args.policy, max_age_days=validated_max_age(args.max_age)),
        verifier=load_verifier(args.public_key),
        store=load_store(),
    )
    mode, code, why = gate_mode(report, args.expect_interim)
    if args.junit:
        from harness.record.junit import write_junit

        document = gate_document(report, mode, code == EXIT_OK, why)
        write_junit(args.junit, "flywheel-chaos gate", gate_cases(document))
    if args.json:
        print_json(gate_document(report, mode, code == EXIT_OK, why))
        return code
    _print(report)
    out.print(f"mode={mode}")
    out.print(why)
    return code


def _print(report: GateReport) -> None:
    table = Table(title="HA state authority readiness", title_justify="left")
    for column in ("requirement", "status", "evidence", "age", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"proven": "green", "unproven": "yellow", "failed": "red", "stale": "magenta"}
    for row in report.rows:
        age = "-" if row.age_days is None else f"{row.age_days:.1f}d"
        status = f"[{colours[row.status]}]{row.status}[/]"
        table.add_row(row.requirement.name, status, row.evidence or "-", age, row.detail)
    out.print(table)
    for tampered in report.tampered:
        out.print(f"[red]TAMPERED[/] {tampered.path.name}: {'; '.join(tampered.problems)}")
    for problem in report.store_problems:
        out.print(f"[red]STORE[/] {problem}")
    for note in report.notes:
        out.print(f"[dim]note:[/] {note}")
    live = report.posture
    if "error" in live:
        out.print(f"live facts: {live['error']}")
    else:
        out.print(
            f"live: {report.facts['namespace']}/{report.facts['deployment']} "
            f"replicas={live['replicas']} ready_endpoints={live['ready_endpoints']} "
            f"on {','.join(live['endpoint_nodes']) or 'no node'}; "
            f"volume nodes {','.join(live['volume_nodes']) or 'none'}; "
            f"image_pinned_by_digest={live['image_pinned_by_digest']}"
        )
    rules = report.rules
    out.print(f"policy: {report.policy} (sha256 {rules.sha256[:16] if rules else '-'})")
    if rules is not None:
        for name, values in rules.effective()["requirements"].items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items() if v is not None)
            out.print(f"[dim]  {name}: {shown}[/]")
    for floor in report.weaker_policy:
        out.print(f"[red]WEAKER[/] {floor}")
    for why in report.unsigned:
        out.print(f"[red]UNSIGNED[/] {why}")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos gate``."""
    parser = add_command(
        sub,
        common,
        "gate",
        help="the HA readiness gate over recorded evidence and live facts",
        description="Exit 0 only when every HA requirement is proven by fresh, verified evidence.",
    )
    parser.add_argument(
        "--expect-interim", action="store_true", help="green while the known interim posture holds"
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="DAYS",
        help="older evidence does not count (default: the policy's, 30)",
    )
    parser.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help="gate policy (default: FLYWHEEL_GATE_POLICY, else the shipped gate.yaml; never ./gate.yaml)",
    )
    parser.add_argument(
        "--public-key",
        default=None,
        metavar="FILE",
        help="check every record's signature (default: FLYWHEEL_EVIDENCE_PUBLIC_KEY)",
    )
    parser.add_argument(
        "--junit",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write JUnit XML: one testcase per requirement row and one for the verdict",
    )
    parser.set_defaults(handler=_cmd_gate)
