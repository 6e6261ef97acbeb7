"""What a game day does around its runs: continue the store's chain first; then the guard,
the gate, the JUnit file and the summary in the store; the notification last.

Each step reports what it did in the summary and never turns a game day's runs into an
error: a store that cannot be read before the runs is named (the chain would fork, so the
runs do not start); anything after the runs that fails is written down and the game day's
outcome stays what its runs were.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.record.evidence import PASSING
from harness.record.junit import Case
from harness.record.store import EvidenceStore, StoreError, load_store, pull

__all__ = [
    "continue_chain",
    "gate_step",
    "guard_step",
    "junit_cases",
    "publish_summary",
    "write_json",
]


STORE_WAIT_S = 60.0
"""How long a game day waits for its evidence store to answer before it starts."""
STORE_RETRY_S = 3.0


def continue_chain(
    directory: Path, progress: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    """Fetch the store's records the directory lacks, so this game day's records extend the
    store's chain (a fresh pod starts with an empty directory). A store that does not answer
    is retried for :data:`STORE_WAIT_S` (each attempt said), then the game day does not
    start: its records would fork the chain."""
    store = load_store()
    if store is None:
        return {"store": None, "pulled": 0}
    deadline, attempt = time.monotonic() + STORE_WAIT_S, 0
    while True:
        attempt += 1
        try:
            fetched = pull(directory, store)
            return {"store": store.url, "pulled": len(fetched), "attempts": attempt}
        except StoreError as exc:
            if time.monotonic() + STORE_RETRY_S > deadline:
                raise ConfigError(
                    f"cannot read the evidence store {store.url} before the game day "
                    f"({attempt} attempts in {STORE_WAIT_S:.0f} s): {exc}",
                    "its records would fork the chain: fix the store "
                    "(flywheel-chaos evidence init)",
                ) from exc
            progress(f"evidence store attempt {attempt}: {exc}; retrying in {STORE_RETRY_S:.0f} s")
            time.sleep(STORE_RETRY_S)


def guard_step() -> dict[str, Any]:
    """The pre-mutation guard, recorded (what the gate's guard row reads)."""
    from harness.guard import resolve_authority, run_guard
    from harness.record.recorder import record_guard

    try:
        authority = resolve_authority()
        report = run_guard(authority)
        written = record_guard(authority, report)
    except Exception as exc:  # recorded in the summary; the runs' outcome stands
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": report.ok, "record": written.path.name, "store": written.store}


def gate_step() -> dict[str, Any]:
    """The gate over everything recorded, as ``flywheel-chaos gate --json`` would say it."""
    from harness.guard import resolve_authority
    from harness.record.gate import evaluate, gate_document, gate_mode, load_policy
    from harness.record.signing import load_verifier

    try:
        report = evaluate(
            resolve_authority(),
            policy=load_policy(None),
            verifier=load_verifier(None),
            store=load_store(),
        )
    except Exception as exc:  # the verdict cannot be had: red, and why
        return {"mode": "error", "ok": False, "reason": f"{type(exc).__name__}: {exc}"}
    mode, code, why = gate_mode(report, expect_interim=False)
    return gate_document(report, mode, code == 0, why)


def junit_cases(summary: dict[str, Any]) -> list[Case]:
    """One case per run of the game day, then the gate's rows when it ran."""
    cases = [
        Case(
            name=f"{Path(r['experiment']).stem} run {r.get('run', 1)}",
            classname=f"gameday.{summary['suite']}",
            seconds=float(r["seconds"]),
            failure=None
            if r["verdict"] in PASSING
            else f"{r['verdict']}: {'; '.join(r['reasons'])}",
            output=str(r.get("evidence") or ""),
        )
        for r in summary["results"]
    ]
    if summary.get("breach"):
        cases.append(
            Case(name="safety", classname=f"gameday.{summary['suite']}", failure=summary["breach"])
        )
    gate = summary.get("gate")
    if gate and "requirements" in gate:
        from harness.record.gate import gate_cases

        cases += gate_cases(gate)
    return cases


def publish_summary(store: EvidenceStore | None, name: str, files: dict[str, Path]) -> str | None:
    """Copy the game day's summary files to ``gamedays/NAME/`` in the store."""
    if store is None:
        return None
    try:
        for file_name, path in files.items():
            store.put(f"gamedays/{name}/{file_name}", path.read_bytes())
    except (StoreError, OSError) as exc:
        return f"the summary was NOT published to {store.url}: {exc}"
    return f"{store.url}/gamedays/{name}/"


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
