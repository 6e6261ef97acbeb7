"""Candidate variants: a named, documented settings overlay on a topology's manifests.

``--candidate ha-rustfs:hung-peer`` (or ``lab up --topology ha-rustfs:hung-peer``) applies
``lab/topologies/ha-rustfs/variants/hung-peer.yaml`` to the topology's manifests without
copying them: for each container whose command is ``command`` (and whose arguments contain
``args_contains``, when given), it sets ``env`` values, appends ``args_add`` and merges
``readinessProbe`` fields. The variant's ``description`` and ``references`` say where each
setting comes from.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

__all__ = ["apply_variant", "load_variant", "split", "variants_of"]


def split(name: str) -> tuple[str, str]:
    """``topology[:variant]`` as (topology, variant or "")."""
    topology, _, variant = name.partition(":")
    return topology, variant


def variants_of(directory: Path) -> list[str]:
    return sorted(p.stem for p in (directory / "variants").glob("*.yaml"))


def load_variant(directory: Path, variant: str) -> dict[str, Any]:
    path = directory / "variants" / f"{variant}.yaml"
    if not path.is_file():
        known = ", ".join(variants_of(directory)) or "none"
        raise ConfigError(
            f"topology {directory.name} has no variant {variant!r}", f"its variants: {known}"
        )
    loaded: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded.get("containers"), list) or not loaded.get("description"):
        raise ConfigError(
            f"variant {path} needs a description and a containers: list", "see its siblings"
        )
    return loaded


def _matches(container: dict[str, Any], rule: dict[str, Any]) -> bool:
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    if not command or Path(str(command[0])).name != rule.get("command"):
        return False
    wanted = rule.get("args_contains")
    return wanted is None or str(wanted) in [str(a) for a in command[1:]]


def _overlay(container: dict[str, Any], rule: dict[str, Any]) -> None:
    env = {e["name"]: e for e in container.get("env") or []}
    for name, value in (rule.get("env") or {}).items():
        env[name] = {"name": name, "value": str(value)}
    if rule.get("env"):
        container["env"] = list(env.values())
    if rule.get("args_add"):
        container["args"] = [*(container.get("args") or []), *map(str, rule["args_add"])]
    if rule.get("readinessProbe"):
        container["readinessProbe"] = {
            **(container.get("readinessProbe") or {}),
            **rule["readinessProbe"],
        }


def _containers(document: Any) -> list[dict[str, Any]]:
    spec = ((document or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return list(spec.get("containers") or [])


def apply_variant(documents: list[Any], variant: dict[str, Any]) -> tuple[list[Any], int]:
    """The documents with the variant applied, and how many containers it changed."""
    changed = 0
    result = copy.deepcopy(documents)
    for document in result:
        for container in _containers(document):
            for rule in variant["containers"]:
                if _matches(container, rule):
                    _overlay(container, rule)
                    changed += 1
    return result, changed
