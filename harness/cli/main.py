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
from pathlib import Path

from rich.table import Table

from flywheel_chaos.errors import exit_code_of
from flywheel_chaos.s3.checks import error_of
from harness.cli import evidence as evidence_commands
from harness.cli import lab as lab_commands
from harness.cli.crash import write_traceback
from harness.cli.output import Parser, err, out, print_json
from harness.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    HarnessError,
)

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
    if args.record:
        from harness.record.evidence import new_record
        from harness.record.recorder import record, target_fingerprint

        written = record(
            new_record(
                kind="guard",
                fault="guard",
                verdict="passed" if report.ok else "failed",
                reasons=[error_of(c)["message"] for c in report.checks if not c["ok"]],
                target={
                    "endpoint": authority.endpoint,
                    "bucket": authority.bucket,
                    "key": authority.key,
                },
                fingerprint=target_fingerprint(authority),
                checks=[{k: c[k] for k in ("name", "ok", "duration_ms")} for c in report.checks],
            )
        )
        err.print(f"[dim]recorded {written.path}[/]")
        if written.store:
            err.print(f"[{'dim' if written.published else 'yellow'}]{written.store}[/]")
    if args.json:
        print_json(report.as_json())
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
                error = error_of(check)
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


# ------------------------------------------------------------------- gate ---


def _cmd_gate(args: argparse.Namespace) -> int:
    from harness.guard import resolve_authority
    from harness.record.gate import evaluate, load_policy
    from harness.record.signing import load_verifier
    from harness.record.store import load_store

    report = evaluate(
        resolve_authority(),
        policy=load_policy(args.policy, max_age_days=args.max_age),
        verifier=load_verifier(args.public_key),
        store=load_store(),
    )
    if args.expect_interim:
        if report.proven:
            mode, code = "stale_interim_flag", EXIT_FAILED
            why = "HA is proven: --expect-interim is stale, drop it"
        elif not report.evidence_ok:
            mode, code, why = (
                "evidence_tampered",
                EXIT_FAILED,
                "recorded evidence fails verification",
            )
        elif not report.guard_ok:
            mode, code, why = (
                "interim_degraded",
                EXIT_FAILED,
                "the guard fails: worse than the known interim posture",
            )
        elif not report.interim_posture:
            mode, code, why = (
                "posture_unknown",
                EXIT_FAILED,
                "the live posture is not the known interim one",
            )
        else:
            mode, code, why = (
                "interim_expected",
                EXIT_OK,
                "the known interim posture; HA not yet proven",
            )
    else:
        mode = "ha_ready" if report.proven else "not_ha_ready"
        code = EXIT_OK if report.proven else EXIT_FAILED
        why = (
            "every requirement is proven and the live posture is HA"
            if report.proven
            else "unproven requirements or posture facts remain"
        )
    if args.json:
        print_json(
            {
                "mode": mode,
                "ok": code == EXIT_OK,
                "reason": why,
                "policy": report.policy,
                "requirements": [r.as_dict() for r in report.rows],
                "tampered": [
                    {"record": v.path.name, "problems": v.problems} for v in report.tampered
                ],
                "store_problems": report.store_problems,
                "notes": report.notes,
                "posture": report.posture,
                "fingerprint": report.fingerprint,
                "facts": report.facts,
            }
        )
        return code
    table = Table(title="HA state authority readiness", title_justify="left")
    for column in ("requirement", "status", "evidence", "age", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"proven": "green", "unproven": "yellow", "failed": "red", "stale": "magenta"}
    for row in report.rows:
        age = "-" if row.age_days is None else f"{row.age_days:.1f}d"
        table.add_row(
            row.requirement.name,
            f"[{colours[row.status]}]{row.status}[/]",
            row.evidence or "-",
            age,
            row.detail,
        )
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
    out.print(f"policy: {report.policy}")
    out.print(f"mode={mode}")
    out.print(why)
    return code


# ---------------------------------------------------------------- gameday ---


def _cmd_gameday(args: argparse.Namespace) -> int:
    from harness.gameday import run_gameday

    summary = run_gameday(
        Path(args.suite),
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


# ---------------------------------------------------------------- recover ---


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

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
    guard.add_argument(
        "--record",
        action="store_true",
        help="write the result as evidence (what the gate's pre-mutation row reads)",
    )
    guard.set_defaults(handler=_cmd_guard)

    gate = sub.add_parser(
        "gate",
        parents=[common],
        help="the HA readiness gate over recorded evidence and live facts",
        description="Exit 0 only when every HA requirement is proven by fresh, verified evidence.",
    )
    gate.add_argument(
        "--expect-interim", action="store_true", help="green while the known interim posture holds"
    )
    gate.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="DAYS",
        help="older evidence does not count (default: the policy's, 30)",
    )
    gate.add_argument(
        "--policy",
        default=None,
        metavar="FILE",
        help="gate policy (default: FLYWHEEL_GATE_POLICY, ./gate.yaml, the repository's gate.yaml)",
    )
    gate.add_argument(
        "--public-key",
        default=None,
        metavar="FILE",
        help="check every record's signature (default: FLYWHEEL_EVIDENCE_PUBLIC_KEY)",
    )
    gate.set_defaults(handler=_cmd_gate)

    gameday = sub.add_parser(
        "gameday", parents=[common], help="run a suite of experiments as a scheduled game day"
    )
    gameday.add_argument("suite", metavar="SUITE.yaml")
    gameday.set_defaults(handler=_cmd_gameday)

    recover = sub.add_parser(
        "recover",
        parents=[common],
        help="undo any fault whose rollback did not run (from persisted intent)",
        description="Undo every change recorded in intent files and node annotations; safe to run "
        "twice. Refuses (exit 1) while a live run holds the cluster lease, unless --force.",
    )
    recover.add_argument(
        "--dry-run", action="store_true", help="say what would be undone; change nothing"
    )
    recover.add_argument(
        "--force",
        action="store_true",
        help="undo even while a live run holds the lease (it then loses the lease and aborts)",
    )
    recover.set_defaults(handler=_cmd_recover)

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
