"""What a bake-off runs: candidates (``topology[:variant]`` in the lab, or ``context/namespace
/workload`` in a real cluster) and faults (each a shipped experiment file and its settings)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from flywheel_chaos import settings
from harness.errors import ConfigError
from harness.lab.topology import directory, known
from harness.lab.variants import load_variant, split

__all__ = [
    "DEFAULT_FAULTS",
    "FAULTS",
    "GATE_FAULTS",
    "Candidate",
    "Fault",
    "parse_candidates",
    "parse_faults",
]


@dataclass(frozen=True)
class Fault:
    name: str
    experiment: str
    """The shipped experiment file (``experiments/<name>.yaml``) it runs, no side door."""
    env: dict[str, str] = field(default_factory=dict)
    lab_only: bool = False


FAULTS: Final = {
    "pod-delete": Fault("pod-delete", "pod-delete"),
    "node-drain": Fault("node-drain", "node-drain"),
    "node-unavailable": Fault(
        "node-unavailable",
        "node-unavailable",
        {settings.FLYWHEEL_NODE_FAULT_METHOD.name: "kubelet-stop"},
    ),
    "node-crash": Fault(
        "node-crash", "node-crash", {settings.FLYWHEEL_NODE_CRASH_METHOD.name: "lab-crash"}, True
    ),
    "node-hang": Fault(
        "node-hang",
        "node-unavailable",
        {settings.FLYWHEEL_NODE_FAULT_METHOD.name: "lab-freeze"},
        True,
    ),
    "bucket-index-loss": Fault("bucket-index-loss", "bucket-index-loss", lab_only=True),
}
DEFAULT_FAULTS: Final = tuple(FAULTS)
GATE_FAULTS: Final = ("pod-delete", "node-drain", "node-unavailable")
"""The faults the gate requires (its pod-restart, node-maintenance, node-unavailability)."""


@dataclass(frozen=True)
class Candidate:
    name: str
    """``topology[:variant]``, or ``context/namespace/workload``."""

    @property
    def in_lab(self) -> bool:
        return "/" not in self.name

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)

    @property
    def cluster(self) -> tuple[str, str, str]:
        context, namespace, workload = self.name.split("/", 2)
        return context, namespace, workload


def parse_candidates(names: list[str]) -> list[Candidate]:
    """Each ``--candidate`` checked before anything starts (default: every topology)."""
    chosen = names or known()
    candidates = []
    for name in chosen:
        if "/" in name:
            if len(name.split("/")) != 3 or not all(name.split("/")):
                raise ConfigError(
                    f"candidate {name!r} is not context/namespace/workload",
                    "for example staging/tofu-state/rustfs",
                )
        else:
            topology, variant = split(name)
            if not directory(topology).is_dir():
                raise ConfigError(
                    f"unknown candidate topology {topology!r}", f"one of: {', '.join(known())}"
                )
            if variant:
                load_variant(directory(topology), variant)
        candidates.append(Candidate(name))
    return candidates


def parse_faults(names: list[str]) -> list[Fault]:
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ConfigError(f"unknown fault(s): {', '.join(unknown)}", f"one of: {', '.join(FAULTS)}")
    return [FAULTS[n] for n in names or DEFAULT_FAULTS]
