"""``flywheel-chaos guard``: the pre-mutation deep check, printed and optionally recorded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from harness.cli.output import add_command, err, out, print_json
from harness.errors import EXIT_FAILED, EXIT_OK


def _cmd_guard(args: argparse.Namespace) -> int:
    from flywheel_chaos.s3.checks import error_of
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
        from harness.record.recorder import record_guard

        written = record_guard(authority, report)
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos guard``."""
    parser = add_command(
        sub,
        common,
        "guard",
        help="pre-mutation deep check of the state authority (fail closed)",
        description="Run every state-authority check; exit 0 only if all pass.",
    )
    parser.add_argument("--endpoint", default="", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3)")
    parser.add_argument(
        "--bucket", default="", help="state bucket (default: TOFU_STATE_BUCKET or tofu-state)"
    )
    parser.add_argument(
        "--key", default="", help="protected state key, only ever HEADed (default: TOFU_STATE_KEY)"
    )
    parser.add_argument("--region", default="", help="region (default: AWS_REGION or us-east-1)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="bound of each check (default 5)",
    )
    parser.add_argument(
        "--backend-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="read bucket, key, region, endpoint and path style from an OpenTofu S3 backend file",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the result as evidence (what the gate's pre-mutation row reads)",
    )
    parser.set_defaults(handler=_cmd_guard)
