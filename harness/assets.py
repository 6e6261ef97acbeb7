"""What the project ships besides code, found the same way in a source tree and an install.

The experiments, game day suites, the gate policy, the lab's topologies and pinned Go tool
modules, and the deploy manifests are package data of ``harness`` (``harness/data/`` links
to the repository's top-level folders, so the wheel carries copies and a source tree reads
the folders themselves): nothing is looked up relative to a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = [
    "data",
    "deploy",
    "experiment",
    "experiments",
    "gamedays",
    "gate_policy",
    "tools",
    "topologies",
]


def data() -> Path:
    return Path(str(resources.files("harness") / "data"))


def experiments() -> Path:
    return data() / "experiments"


def experiment(name: str) -> Path:
    """``experiments/<name>.yaml`` (``name`` may carry ``.yaml``)."""
    return experiments() / (name if name.endswith(".yaml") else f"{name}.yaml")


def gamedays() -> Path:
    return data() / "gamedays"


def gate_policy() -> Path:
    return data() / "gate.yaml"


def topologies() -> Path:
    return data() / "topologies"


def tools() -> Path:
    return data() / "tools"


def deploy() -> Path:
    return data() / "deploy"
