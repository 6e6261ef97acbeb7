"""The scorecard: every number computed from the candidates' evidence records, then ranked.

Per candidate and fault: survived k/N with the Wilson 95 % interval, outage p50/p95/max,
time to serve again, HEAD failures, phantom NoSuchKey/NoSuchBucket samples, OpenTofu's
plans (no-op, failed, phantom), lock double winners. Per candidate: the proofs, the gate's
verdict and the rows that keep it red, lab start-up time and memory.

**Ranking**: a candidate that ever showed a phantom (a HEAD answering NoSuchKey/NoSuchBucket,
or a phantom plan) or a double lock winner ranks below every candidate that never did; then
by the gate's required faults passed (every run survived), then by the Wilson lower bound of
those faults' runs together, then by their p95 outage (lower first).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema

from harness.bakeoff.plan import GATE_FAULTS, Candidate
from harness.bakeoff.runner import finished_runs
from harness.record.evidence import verify
from harness.record.gate import wilson_lower
from harness.record.signing import load_verifier

__all__ = ["SCHEMA", "build", "rank_key", "wilson_upper"]

SCHEMA: Final = "flywheel-chaos/scorecard/v1"


def wilson_upper(successes: int, total: int, z: float = 1.96) -> float | None:
    if total == 0:
        return None
    p = successes / total
    centre = p + z * z / (2 * total)
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return min(1.0, (centre + margin) / (1 + z * z / total))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, math.ceil(q * len(ordered)) - 1)
    return round(ordered[index], 3)


def _records(directory: Path) -> dict[str, dict[str, Any]]:
    """The candidate's evidence records that verify (with its lab's key), by file name."""
    public = directory / "lab" / "keys" / "evidence.pub"
    verifier = load_verifier(public) if public.exists() else None
    evidence = directory / "evidence"
    if not evidence.is_dir():
        return {}
    return {v.path.name: v.record for v in verify(evidence, verifier) if v.ok and v.record}


def _locks_broken(record: dict[str, Any]) -> int:
    return sum(
        1
        for failure in record.get("steady_failures") or []
        if str(failure.get("error", "")).startswith("lock-not-exclusive")
    )


def fault_stats(records: list[dict[str, Any]], passing: str = "survived") -> dict[str, Any]:
    """The numbers of one candidate's runs of one fault."""
    probers = [r.get("prober") or {} for r in records]
    tofus = [r.get("tofu") or {} for r in records]
    outages = [
        float(p["longest_outage_ms"]) / 1000
        for p in probers
        if isinstance(p.get("longest_outage_ms"), int | float)
    ]
    back = [
        float(p["recovery_after_fault_ms"]) / 1000
        for p in probers
        if isinstance(p.get("recovery_after_fault_ms"), int | float)
    ]
    survived = sum(1 for r in records if r.get("verdict") == passing)
    lower, upper = wilson_lower(survived, len(records)), wilson_upper(survived, len(records))
    return {
        "runs": len(records),
        "survived": survived,
        "verdicts": [r.get("verdict") for r in records],
        "wilson95": [None if lower is None else round(lower, 3), None if upper is None else round(upper, 3)],
        "outage_s": {"p50": _percentile(outages, 0.5), "p95": _percentile(outages, 0.95),
                     "max": round(max(outages), 3) if outages else None, "all": [round(o, 3) for o in outages]},
        "serving_again_s": round(statistics.median(back), 3) if back else None,
        "head_failures": sum(int(p.get("head_failures") or 0) for p in probers),
        "head_samples": sum(int(p.get("head_samples") or 0) for p in probers),
        "phantom_samples": sum(int(p.get("state_key_missing") or 0) for p in probers),
        "tofu_plans": {k: sum(int(t.get(k.replace("-", "_")) or 0) for t in tofus) for k in ("no-op", "failed", "phantom")},
        "lock_double_winners": sum(_locks_broken(r) for r in records),
    }  # fmt: skip


def _candidate(directory: Path, name: str) -> dict[str, Any]:
    records = _records(directory)
    lines = finished_runs(directory)
    by_fault: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        record = records.get(str(line.get("record")))
        if record is not None:
            by_fault.setdefault(str(line["fault"]), []).append(record)
    proofs = {
        f: (by_fault.pop(f, [{}])[-1].get("verdict"))
        for f in ("guard", "backup-restore", "tofu-noop-plan")
    }
    faults = {
        f: fault_stats(rs, "passed" if f == "bucket-index-loss" else "survived")
        for f, rs in by_fault.items()
    }
    lab = (
        json.loads((directory / "lab.json").read_text())
        if (directory / "lab.json").exists()
        else {}
    )
    gate_path = directory / "gate.json"
    gate = json.loads(gate_path.read_text()) if gate_path.exists() else None
    return {
        "candidate": name,
        "faults": faults,
        "proofs": proofs,
        "lab": {"up_s": lab.get("up_s"), "rss_mib": lab.get("rss_mib")},
        "gate": None if gate is None else {
            "exit": gate.get("exit"),
            "mode": gate.get("mode"),
            "red_rows": [
                {"requirement": r["requirement"], "status": r["status"], "detail": r.get("detail", "")}
                for r in gate.get("requirements") or [] if r.get("status") != "proven"
            ],
        },
        "tofu_timeline": _timelines(records, lines),
    }  # fmt: skip


def _timelines(records: dict[str, dict[str, Any]], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One run per fault: its plans and its prober's outage windows, side by side."""
    found: dict[str, Any] = {}
    for line in lines:
        record = records.get(str(line.get("record")))
        fault = str(line.get("fault"))
        if record is None or fault in found or not (record.get("tofu") or {}).get("plans"):
            continue
        prober = record.get("prober") or {}
        origin = float(prober.get("started_at") or 0)
        found[fault] = {
            "plans": [{"t": round(p["at"] - origin, 3), "s": p.get("seconds"), "outcome": p["outcome"]}
                      for p in record["tofu"]["plans"]],
            "outages": [{"start": round(w["start"] - origin, 3), "end": round(w["end"] - origin, 3)}
                        for w in prober.get("outages") or []],
            "fault": [round((prober.get(k) or origin) - origin, 3) for k in ("fault_started_at", "fault_ended_at")],
            "span": round(float(prober.get("stopped_at") or origin) - origin, 3),
        }  # fmt: skip
    return found


def _required(candidate: dict[str, Any]) -> dict[str, Any]:
    faults = candidate["faults"]
    present = [faults[f] for f in GATE_FAULTS if f in faults]
    runs = sum(f["runs"] for f in present)
    survived = sum(f["survived"] for f in present)
    outages = [o for f in present for o in f["outage_s"]["all"]]
    lower = wilson_lower(survived, runs)
    return {
        "faults_passed": sum(1 for f in present if f["runs"] and f["survived"] == f["runs"]),
        "runs": runs,
        "survived": survived,
        "wilson95_lower": None if lower is None else round(lower, 3),
        "outage_p95_s": _percentile(outages, 0.95),
    }


def _phantoms(candidate: dict[str, Any]) -> list[str]:
    found = []
    for name, stats in candidate["faults"].items():
        if stats["phantom_samples"]:
            found.append(
                f"{name}: {stats['phantom_samples']} HEAD(s) answered NoSuchKey/NoSuchBucket"
            )
        if stats["tofu_plans"]["phantom"]:
            found.append(f"{name}: {stats['tofu_plans']['phantom']} phantom tofu plan(s)")
        if stats["lock_double_winners"]:
            found.append(
                f"{name}: {stats['lock_double_winners']} lock race(s) with a second winner"
            )
    return found


def rank_key(candidate: dict[str, Any]) -> tuple[Any, ...]:
    required = candidate["required"]
    lower = required["wilson95_lower"] if required["wilson95_lower"] is not None else -1.0
    p95 = required["outage_p95_s"] if required["outage_p95_s"] is not None else math.inf
    return (bool(candidate["phantoms"]), -required["faults_passed"], -lower, p95)


def _decision(ranked: list[dict[str, Any]]) -> str:
    if not ranked:
        return "No candidate ran."
    best = ranked[0]
    gate = best.get("gate") or {}
    required = best["required"]
    summary = (
        f"{required['faults_passed']}/{len(GATE_FAULTS)} required faults survived in every run, "
        f"survival lower bound {required['wilson95_lower']}, p95 outage {required['outage_p95_s']} s"
    )
    if gate.get("exit") == 0 and not best["phantoms"]:
        return f"Deploy {best['candidate']}: its gate is green ({summary}), and it never showed a phantom."
    stops = []
    for candidate in ranked:
        why = (
            candidate["phantoms"][:1]
            or [
                f"{r['requirement']} {r['status']}"
                for r in (candidate.get("gate") or {}).get("red_rows", [])[:3]
            ]
            or ["no gate verdict"]
        )
        stops.append(f"{candidate['candidate']} ({'; '.join(why)})")
    return (
        f"No candidate qualifies yet: {best['candidate']} ranks first ({summary}); "
        f"what stops each: {', '.join(stops)}."
    )


def build(out: Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The scorecard of a bake-off directory (validated against its schema)."""
    manifest = json.loads((out / "bakeoff.json").read_text())
    candidates = []
    for name in manifest["candidates"]:
        directory = out / Candidate(name).slug
        if not directory.is_dir():
            continue
        candidate = _candidate(directory, name)
        candidate["required"] = _required(candidate)
        candidate["phantoms"] = _phantoms(candidate)
        candidates.append(candidate)
    ranked = sorted(candidates, key=rank_key)
    for position, candidate in enumerate(ranked, start=1):
        candidate["rank"] = position
    card = {
        "schema": SCHEMA,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "manifest": manifest,
        "meta": meta or {},
        "decision": _decision(ranked),
        "candidates": ranked,
    }
    schema = json.loads(
        resources.files("harness.bakeoff").joinpath("scorecard.schema.json").read_text()
    )
    jsonschema.validate(card, schema)
    return card
