"""The gate's policy, and the floors no policy may go below.

The design note's requirements are all required, each with its fault and evidence kind; the
built-in values are **floors**: a policy may ask for more runs, younger evidence, smaller
outage budgets, stricter posture minimums or a higher survival bound, never less. A weaker
or incomplete policy is read (so the table still shows every row) and named: the gate then
says ``mode=weaker_policy``, listing each floor it breaks, and never exits 0.

Which policy: ``--policy FILE``, else ``FLYWHEEL_GATE_POLICY``, else the shipped
``gate.yaml``. Never one that happens to sit in the working directory.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import jsonschema
import yaml

from flywheel_chaos import settings
from harness import assets
from harness.errors import ConfigError

__all__ = [
    "FLOORS",
    "REQUIRED",
    "Policy",
    "Requirement",
    "load_policy",
    "policy_from",
    "shipped_policy",
    "validated_max_age",
]


REQUIRED: Final[dict[str, tuple[str, str]]] = {
    "pod-restart": ("pod-delete", "experiment"),
    "node-maintenance": ("node-drain", "experiment"),
    "node-unavailability": ("node-unavailable", "experiment"),
    "no-op-plan": ("tofu-noop-plan", "proof"),
    "backup-restore": ("backup-restore", "proof"),
    "pre-mutation-guard": ("guard", "guard"),
}
"""Every requirement of the design note backed by recorded runs: its fault and kind."""


@dataclass(frozen=True)
class Floors:
    runs: dict[str, int]
    """The fewest runs per evidence kind."""
    max_age_days: float
    outage_budget_s: dict[str, float]
    """The largest outage budget per requirement."""
    posture: dict[str, int]
    min_survival_lower_bound: float


FLOORS: Final = Floors(
    runs={"experiment": 5, "proof": 1, "guard": 1},
    max_age_days=30.0,
    outage_budget_s={"pod-restart": 60.0, "node-maintenance": 30.0, "node-unavailability": 30.0},
    posture={"min_ready_endpoints": 2, "min_endpoint_nodes": 2, "min_volume_nodes": 2},
    min_survival_lower_bound=0.5,
)

TITLES: Final = {
    "s3-checks": "S3 list-buckets, head-bucket, state-key HEAD, bounded write/read/delete",
    "lock-exclusivity": "lock exclusivity as use_lockfile needs it",
    "no-op-plan": "no-op OpenTofu plan against a stack on the authority",
    "pod-restart": "pod restart survival",
    "node-maintenance": "node maintenance (drain of the target node) survival",
    "node-unavailability": "node unavailability survival",
    "backup-restore": "backup, restore, retention and versioning behaviour",
    "pre-mutation-guard": "pre-mutation guard wired (a recorded guard run passed)",
    "ha-endpoints": "ready S3 endpoints on distinct nodes",
    "ha-data": "the data is not on one node only",
    "ha-restart-volume": "no ReadWriteOnce claim shared by a restart",
    "ha-volume-nodes": "nodes able to host the authority's volumes",
}
ORDER: Final = (
    "s3-checks",
    "no-op-plan",
    "lock-exclusivity",
    "pod-restart",
    "node-maintenance",
    "node-unavailability",
    "backup-restore",
    "pre-mutation-guard",
)


@dataclass(frozen=True)
class Requirement:
    name: str
    title: str
    kind: str  # evidence kind it needs; "live" for checks run now, "posture" for live facts
    fault: str = ""
    runs: int = 1
    max_age_days: float = 30.0
    outage_budget_s: float | None = None
    min_survival_lower_bound: float = FLOORS.min_survival_lower_bound


@dataclass(frozen=True)
class Policy:
    requirements: tuple[Requirement, ...]
    min_ready_endpoints: int = 2
    min_endpoint_nodes: int = 2
    min_volume_nodes: int = 2
    source: str = "built-in"
    sha256: str = ""
    weaker: tuple[str, ...] = field(default=())
    """Each floor the policy breaks, in words (empty: none)."""

    def effective(self) -> dict[str, Any]:
        """The values the gate judges with (shown by the table and ``--json``)."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "requirements": {
                r.name: {
                    "fault": r.fault,
                    "kind": r.kind,
                    "runs": r.runs,
                    "max_age_days": r.max_age_days,
                    "outage_budget_s": r.outage_budget_s,
                    "min_survival_lower_bound": r.min_survival_lower_bound,
                }
                for r in self.requirements
                if r.kind not in ("live", "posture")
            },
            "posture": {
                "min_ready_endpoints": self.min_ready_endpoints,
                "min_endpoint_nodes": self.min_endpoint_nodes,
                "min_volume_nodes": self.min_volume_nodes,
            },
            "weaker": list(self.weaker),
        }


def _schema() -> dict[str, Any]:
    text = resources.files("harness.record").joinpath("gate-policy.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def validated_max_age(days: float | None) -> float | None:
    """``--max-age``: a finite number of days above 0 (``inf``, NaN and 0 are refused)."""
    if days is None:
        return None
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(
            f"--max-age {days} is not a number of days above 0",
            f"give a finite age, at most {FLOORS.max_age_days:g} days (the policy floor)",
        )
    return float(days)


def _requirement(
    name: str, spec: dict[str, Any], defaults: dict[str, Any], max_age: float | None
) -> tuple[Requirement, list[str]]:
    """One requirement as the policy gives it, and the floors it breaks."""
    fault, kind = REQUIRED[name]
    weaker = []
    if (spec.get("fault"), spec.get("kind")) != (fault, kind):
        weaker.append(
            f"{name} is proven by {spec.get('kind')} {spec.get('fault')!r}, not {kind} {fault!r}"
        )
    runs = int(spec.get("runs", defaults.get("runs", FLOORS.runs[kind])))
    if runs < FLOORS.runs[kind]:
        weaker.append(f"{name} needs {runs} run(s), fewer than the floor {FLOORS.runs[kind]}")
    age = float(
        max_age
        if max_age is not None
        else spec.get("max_age_days", defaults.get("max_age_days", FLOORS.max_age_days))
    )
    if age > FLOORS.max_age_days:
        weaker.append(
            f"{name} accepts evidence {age:g} days old, older than {FLOORS.max_age_days:g}"
        )
    budget = spec.get("outage_budget_s", FLOORS.outage_budget_s.get(name))
    ceiling = FLOORS.outage_budget_s.get(name)
    if ceiling is not None and (budget is None or float(budget) > ceiling):
        weaker.append(f"{name} allows a {budget} s outage, more than the floor {ceiling:g} s")
    bound = float(
        spec.get(
            "min_survival_lower_bound",
            defaults.get("min_survival_lower_bound", FLOORS.min_survival_lower_bound),
        )
    )
    if bound < FLOORS.min_survival_lower_bound:
        weaker.append(
            f"{name} accepts a survival lower bound of {bound:g}, "
            f"below {FLOORS.min_survival_lower_bound:g}"
        )
    requirement = Requirement(
        name, TITLES[name], str(spec.get("kind")), str(spec.get("fault")), runs, age,
        None if budget is None else float(budget), bound,
    )  # fmt: skip
    return requirement, weaker


def policy_from(
    document: Any, source: str, max_age_days: float | None = None, sha256: str = ""
) -> Policy:
    """A :class:`Policy` from a parsed document (schema-checked: a malformed one is exit 2)."""
    try:
        jsonschema.validate(document, _schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise ConfigError(
            f"gate policy {source} is invalid at {where}: {exc.message}",
            "see gate.yaml in the repository and harness/record/gate-policy.schema.json",
        ) from exc
    max_age = validated_max_age(max_age_days)
    defaults = document.get("defaults") or {}
    rows: list[Requirement] = []
    weaker: list[str] = []
    for name in ORDER:
        if name in ("s3-checks", "lock-exclusivity"):
            rows.append(Requirement(name, TITLES[name], "live", "lock" if name[0] == "l" else ""))
            continue
        spec = document["requirements"].get(name)
        if spec is None:
            weaker.append(f"{name} is missing: the gate can never prove it")
            fault, kind = REQUIRED[name]
            spec = {"fault": fault, "kind": kind}
        requirement, broken = _requirement(name, spec, defaults, max_age)
        rows.append(requirement)
        weaker += broken
    live = document.get("posture") or {}
    minimums = {k: int(live.get(k, floor)) for k, floor in FLOORS.posture.items()}
    weaker += [
        f"posture {k} is {v}, below the floor {FLOORS.posture[k]}"
        for k, v in minimums.items()
        if v < FLOORS.posture[k]
    ]
    return Policy(
        tuple(rows),
        minimums["min_ready_endpoints"],
        minimums["min_endpoint_nodes"],
        minimums["min_volume_nodes"],
        source,
        sha256,
        tuple(weaker),
    )


def shipped_policy() -> Path:
    """The policy the project ships (the repository's ``gate.yaml``)."""
    return assets.gate_policy()


def load_policy(path: str | Path | None = None, max_age_days: float | None = None) -> Policy:
    """The gate policy: ``path``, else ``FLYWHEEL_GATE_POLICY``, else the shipped one."""
    explicit = path or settings.FLYWHEEL_GATE_POLICY.get()
    candidate = Path(explicit) if explicit else shipped_policy()
    if not candidate.is_file():
        raise ConfigError(
            f"gate policy {candidate} does not exist",
            "give --policy FILE (or FLYWHEEL_GATE_POLICY), or omit it for the shipped gate.yaml",
        )
    data = candidate.read_bytes()
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"gate policy {candidate} is not valid YAML: {exc}", "see gate.yaml"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    return policy_from(document, str(candidate.resolve()), max_age_days, digest)
