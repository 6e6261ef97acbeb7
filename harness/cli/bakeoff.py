"""``flywheel-chaos bakeoff``: the candidates, side by side, into one ranked scorecard.

Long work looks like it: a progress line per run (candidate, fault, run k of M, elapsed, ETA,
the verdicts so far); Ctrl-C stops after the current run's rollback (the lab is left up,
every finished run kept) and ``--resume DIR`` continues; ``--json-lines`` prints one line per
finished run; ``--junit FILE`` writes one testcase per run and per requirement.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import time
from pathlib import Path
from typing import Any

from harness.cli.output import add_command, err, out
from harness.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ConfigError


class Progress:
    """What a finished run or a phase tells the operator (rich, on stderr)."""

    def __init__(self, total: int, json_lines: bool) -> None:
        self.total, self.done, self.json_lines = total, 0, json_lines
        self.started = time.monotonic()
        self.verdicts: dict[str, int] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "run":
            self.done += 1
            verdict = str(event.get("verdict"))
            self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
            if self.json_lines:
                print(json.dumps(event), flush=True)
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        if kind == "start":
            err.print(
                f"[bold]{event['candidate']}[/] {event['fault']} run {event['index']} "
                f"({self.done + 1} of {self.total}) elapsed {elapsed / 60:.1f} min"
                + (f", ETA {eta / 60:.0f} min" if eta is not None else "")
            )
        elif kind == "run":
            so_far = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
            err.print(
                f"  {event.get('fault')} {event.get('index')}: [bold]{event.get('verdict')}[/] in "
                f"{event.get('seconds')} s (settled after {event.get('settled_s', '-')} s); so far: {so_far}"
            )
        elif kind == "candidate":
            err.print(f"[bold]== {event['candidate']}[/] lab {event.get('lab')}")
        elif kind == "stopped":
            err.print(
                f"[yellow]stopped[/]: {event['candidate']}'s lab is left up in {event['lab']} (--resume continues)"
            )


def _cmd_bakeoff(args: argparse.Namespace) -> int:
    from harness.bakeoff.plan import GATE_FAULTS, parse_candidates, parse_faults
    from harness.bakeoff.render import html_page, markdown
    from harness.bakeoff.runner import Bakeoff
    from harness.bakeoff.scorecard import build

    if args.resume:
        directory = Path(args.resume)
        manifest_path = directory / "bakeoff.json"
        if not manifest_path.exists():
            raise ConfigError(
                f"{directory} is not a bake-off directory (no bakeoff.json)",
                "give the --out of the bake-off to resume",
            )
        manifest = json.loads(manifest_path.read_text())
        candidates, faults = (
            parse_candidates(manifest["candidates"]),
            parse_faults(manifest["faults"]),
        )
        runs, extra, tofu = (
            int(manifest["runs"]),
            dict(manifest.get("extra_runs") or {}),
            bool(manifest.get("tofu", True)),
        )
    else:
        directory = Path(args.out)
        candidates, faults = parse_candidates(args.candidate or []), parse_faults(args.fault or [])
        runs, tofu = args.runs, not args.no_tofu
        extra = {f: args.gate_runs for f in GATE_FAULTS} if args.gate_runs else {}
        on = args.gate_runs_on or [c.name for c in candidates]
        extra = {"runs": extra, "candidates": on} if extra else {}
        if args.runs < 1:
            raise ConfigError(
                f"--runs {args.runs} is below 1", "give at least 1 (the gate wants 5)"
            )
    bakeoff = Bakeoff(directory, candidates, faults, runs, extra, tofu)
    total = sum(3 + len(bakeoff.planned(c)) for c in candidates)
    bakeoff.on_event = Progress(total, args.json_lines)

    def interrupted(signum: int, frame: object) -> None:
        if bakeoff.stop.is_set():
            raise KeyboardInterrupt
        bakeoff.stop.set()
        err.print("[yellow]stopping after the current run's rollback (Ctrl-C again to abort)[/]")

    previous = signal.signal(signal.SIGINT, interrupted)
    started = time.monotonic()
    try:
        bakeoff.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    meta = {"machine": f"{platform.node()} ({platform.machine()}, {__import__('os').cpu_count()} cores)",
            "duration_min": round((time.monotonic() - started) / 60, 1),
            "command": "flywheel-chaos bakeoff " + " ".join(f"--candidate {c.name}" for c in candidates)}  # fmt: skip
    card = build(directory, meta)
    (directory / "scorecard.json").write_text(json.dumps(card, indent=2) + "\n")
    (directory / "scorecard.md").write_text(markdown(card))
    (directory / "scorecard.html").write_text(html_page(card))
    if args.junit:
        from harness.bakeoff.render import junit_cases
        from harness.bakeoff.runner import finished_runs
        from harness.record.junit import write_junit

        runs_of = {c.name: finished_runs(directory / c.slug) for c in candidates}
        write_junit(Path(args.junit), "flywheel-chaos bakeoff", junit_cases(card, runs_of))
    out.print(card["decision"])
    out.print(f"scorecard: {directory / 'scorecard.md'}, {directory / 'scorecard.html'}")
    if bakeoff.stop.is_set():
        return EXIT_INTERRUPTED
    best = card["candidates"][0] if card["candidates"] else {}
    return EXIT_OK if (best.get("gate") or {}).get("exit") == 0 else EXIT_FAILED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """``flywheel-chaos bakeoff``."""
    parser = add_command(
        sub, common, "bakeoff",
        help="every candidate through the same proofs and faults, N runs each: a ranked scorecard",
        description="Run the shipped experiments N times against each candidate (a fresh lab each, "
        "OpenTofu in the loop), then rank them. Exit 0 when the best candidate's gate is green.",
    )  # fmt: skip
    parser.add_argument(
        "--candidate",
        action="append",
        metavar="T[:VARIANT]",
        help="a topology (and variant); default: every topology",
    )
    parser.add_argument(
        "--fault", action="append", metavar="F", help="a fault (default: every one)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of every fault (default 5)")
    parser.add_argument(
        "--gate-runs",
        type=int,
        default=0,
        metavar="N",
        help="runs of the gate's three faults (default: --runs)",
    )
    parser.add_argument(
        "--gate-runs-on",
        action="append",
        metavar="CANDIDATE",
        help="only these candidates get --gate-runs (default: all)",
    )
    parser.add_argument(
        "--out", default="bakeoff", metavar="DIR", help="where runs, evidence and the scorecard go"
    )
    parser.add_argument("--resume", default="", metavar="DIR", help="continue a stopped bake-off")
    parser.add_argument(
        "--json-lines", action="store_true", help="one JSON line per finished run on stdout"
    )
    parser.add_argument(
        "--junit",
        default="",
        metavar="FILE",
        help="JUnit XML: a testcase per run and per requirement",
    )
    parser.add_argument(
        "--no-tofu", action="store_true", help="no OpenTofu plan loop during the faults"
    )
    parser.set_defaults(handler=_cmd_bakeoff)
