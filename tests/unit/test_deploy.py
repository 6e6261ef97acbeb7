"""deploy/ renders with the real kustomize (kubectl kustomize), and each value is written once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def _render(folder: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def _gameday_env(documents: list[dict[str, Any]]) -> dict[str, Any]:
    cronjob = _one(documents, "CronJob", "flywheel-chaos-weekly")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """An overlay of the base that renames the node, namespace, workload and schedule."""
    root = tmp_path_factory.mktemp("overlay")
    shutil.copytree(REPO / "deploy", root / "deploy")
    overlay = root / "deploy" / "overlays" / "renamed"
    (overlay / "settings").mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../base]\n"
        "images: [{name: ghcr.io/tinyland-inc/flywheel-chaos, newName: reg.example/fc, newTag: t1}]\n"
        "components: [../../components/node-fault, ../../components/disk-view, settings,"
        " ../../components/wiring]\n"
    )
    (overlay / "settings" / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nconfigMapGenerator:\n"
        "  - name: flywheel-chaos-settings\n    namespace: flywheel-chaos\n    behavior: merge\n"
        "    literals: [target-node=worker-9, state-namespace=state, state-workload=s3,"
        " 'schedule=5 4 * * 1', 'state-endpoint=http://s3.state.svc:9000', lease-namespace=leases, signing-key-secret=my-signer]\n"
    )
    return _render(overlay)


def test_the_lab_overlay_renders_with_its_evidence_store_and_image() -> None:
    documents = _render(REPO / "deploy" / "overlays" / "lab")
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert ("Deployment", "flywheel-evidence") in kinds and (
        "Job",
        "flywheel-evidence-init",
    ) in kinds
    cronjob = _one(documents, "CronJob", "flywheel-chaos-weekly")
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"] == "localhost/flywheel-chaos:0.3.0"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_an_overlay_that_renames_the_node_leaves_no_bumble_anywhere(
    renamed: list[dict[str, Any]],
) -> None:
    text = yaml.safe_dump_all(renamed)
    assert "bumble" not in text and "nix-cache" not in text
    role = _one(renamed, "ClusterRole", "flywheel-chaos")
    assert any(rule.get("resourceNames") == ["worker-9"] for rule in role["rules"])
    cronjob = _one(renamed, "CronJob", "flywheel-chaos-weekly")
    assert cronjob["spec"]["schedule"] == "5 4 * * 1"
    affinity = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["affinity"]
    term = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["worker-9"]
    namespaces = {
        (d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in renamed
    }
    assert namespaces[("Role", "flywheel-chaos")] == "state"
    assert namespaces[("Role", "flywheel-chaos-disk-view-claims")] == "state"
    assert namespaces[("Role", "flywheel-chaos-lease")] == "leases"
    volumes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "signing-key",
        "secret": {"secretName": "my-signer", "defaultMode": 288},
    } in volumes


def test_no_placeholder_survives_a_render(renamed: list[dict[str, Any]]) -> None:
    for folder in ("base", "overlays/lab", "overlays/production-example"):
        text = yaml.safe_dump_all(_render(REPO / "deploy" / folder))
        for placeholder in ("TARGET-NODE", "STATE-NAMESPACE", "LEASE-NAMESPACE", "SCHEDULE",
                            "-SECRET"):  # fmt: skip
            assert placeholder not in text, (folder, placeholder)
    assert "TARGET-NODE" not in yaml.safe_dump_all(renamed)


def test_the_game_day_reads_every_setting_from_the_one_configmap(
    renamed: list[dict[str, Any]],
) -> None:
    env = _gameday_env(renamed)
    node_refs = [
        name for name, value in env.items()
        if isinstance(value, dict) and value.get("configMapKeyRef", {}).get("key") == "target-node"
    ]  # fmt: skip
    assert sorted(node_refs) == ["FLYWHEEL_NODE_ALLOWLIST", "FLYWHEEL_TARGET_NODE"]
    settings = _one(renamed, "ConfigMap", _configmap_name(renamed))
    assert settings["data"]["target-node"] == "worker-9"
    assert "KUBECONFIG" not in env  # in a pod: in-cluster configuration


def _configmap_name(documents: list[dict[str, Any]]) -> str:
    return next(
        d["metadata"]["name"]
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("flywheel-chaos-settings")
    )
