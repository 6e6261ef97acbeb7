"""Helpers for tests that use the lab (pure plumbing, no assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from kubernetes import client, config

from harness.lab.cluster import Lab
from harness.lab.paths import LabPaths
from harness.lab.testing import scratch_lab
from harness.lab.topology import STATE_NAMESPACE
from harness.processes import wait_until
from harness.record.evidence import new_record, record_files, write_record
from harness.record.verdict import RULES_VERSION

REPO = Path(__file__).resolve().parents[2]


BIN = Path(sys.executable).parent


def env_file(path: Path) -> dict[str, str]:
    """The lab's environment as ``source .lab/env`` would set it."""
    return Lab(LabPaths(path.parent)).env_values()


def _chaos_argv(experiment: Path, tmp_path: Path) -> list[str]:
    return [
        str(BIN / "chaos"),
        "--log-file",
        str(tmp_path / "chaos.log"),
        "run",
        "--journal-path",
        str(tmp_path / "journal.json"),
        str(experiment),
    ]


def chaos_start(experiment: Path, env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    """``chaos run EXPERIMENT`` started in its own session with ``env`` on top of ours; its
    log and journal in ``tmp_path``, stdout and stderr together."""
    return subprocess.Popen(
        _chaos_argv(experiment, tmp_path),
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def chaos_run(
    experiment: str, env: dict[str, str], tmp_path: Path
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """``chaos run experiments/<experiment>.yaml`` with ``env`` (10 min bound); the one record
    it wrote in ``FLYWHEEL_EVIDENCE_DIR`` and the finished process (its log in tmp_path)."""
    process = subprocess.run(
        _chaos_argv(REPO / "experiments" / f"{experiment}.yaml", tmp_path),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    (path,) = record_files(Path(env["FLYWHEEL_EVIDENCE_DIR"]))
    record: dict[str, Any] = json.loads(path.read_text())
    return record, process


def fresh_run_env(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The lab's environment with a fresh evidence and state directory, also set in os.environ."""
    env = lab.env_values()
    env["FLYWHEEL_EVIDENCE_DIR"] = str(tmp_path / "evidence")
    env["FLYWHEEL_STATE_DIR"] = str(tmp_path / "state")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``flywheel-chaos ARGS`` from this venv with ``env`` on top of ours (5 min bound)."""
    return subprocess.run(
        [str(BIN / "flywheel-chaos"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@contextmanager
def disruption_budget(lab: Lab, namespace: str, app: str, min_available: int = 1) -> Iterator[str]:
    """A PodDisruptionBudget counted by the disruption controller; removed afterwards."""
    policy = client.PolicyV1Api(
        config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
    )
    name = f"pdb-{uuid.uuid4().hex[:6]}"
    policy.create_namespaced_pod_disruption_budget(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "minAvailable": min_available,
                "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
            },
        },
    )
    try:
        wait_until(
            lambda: (
                (
                    policy.read_namespaced_pod_disruption_budget(
                        name, namespace
                    ).status.current_healthy
                    or 0
                )
                >= min_available
            ),
            30,
            "the disruption controller to count the healthy pod",
        )
        yield name
    finally:
        policy.delete_namespaced_pod_disruption_budget(name, namespace)


def running_lab(root: Path, topology: str = "interim-seaweedfs") -> AbstractContextManager[Lab]:
    """A fresh lab in ``root`` (a temporary directory) with ``topology``, removed after.

    The harness's own behaviour (controls, faults, gate, lab) is tested on the
    SeaweedFS topologies, which need no RustFS build; what RustFS does is
    tested on ``interim`` and ``ha-rustfs`` in test_lab_rustfs.py.
    """
    return scratch_lab(root, topology)


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL_S3"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(
            connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 1}
        ),
    )


def object_bytes(env: dict[str, str], key: str) -> bytes | None:
    """The bytes of a canary object, or None while the server cannot return them."""
    try:
        body: bytes = (
            s3_client(env).get_object(Bucket=env["TOFU_STATE_BUCKET"], Key=key)["Body"].read()
        )
        return body
    except Exception:
        return None


def serving(env: dict[str, str]) -> bool:
    try:
        s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
        return True
    except Exception:
        return False


def fault_actions(fault: str, live: dict[str, Any], owner: str | None = None) -> list[Any]:
    """The fault's own action, with the output that action gives, tied to ``owner`` (by
    default the live serving workload's UID): what a real run of the fault records."""
    uid = owner or next(w["uid"] for w in live["workloads"] if w["kind"] == "Deployment")
    pod = {"name": "attic-rustfs-openebs-x", "uid": "p", "owner_uids": ["rs", uid]}
    action, output = {
        "pod-delete": (("actions.pods", "delete_state_authority_pods"),
                       {"namespace": STATE_NAMESPACE, "deleted": [pod], "dry_run": False}),
        "node-drain": (("actions.nodes", "drain_node"),
                       {"pods": [{**pod, "pod": f"{STATE_NAMESPACE}/x", "evicted_at": "now"}],
                        "dry_run": False}),
        "node-unavailable": (("actions.nodes", "make_node_unavailable"),
                             {"confirmed": True, "confirmation": "bumble Ready=Unknown",
                              "displaced_pods": [{**pod, "pod": f"{STATE_NAMESPACE}/x"}],
                              "dry_run": False}),
    }[fault]  # fmt: skip
    module, func = action
    provider = {"type": "python", "module": module, "func": func}
    return [{"name": fault, "status": "succeeded", "provider": provider, "output": output}]


def write_full_set(directory: Path, live: dict[str, Any], signer: Any) -> None:
    """Five survived, fault-proven runs of each required fault, both proofs and a guard,
    each signed with the lab's key, against the live fingerprint."""
    prober = {"longest_outage_ms": 900.0, "coverage": {"largest_gap_ms": 150.0}}
    for fault in ("pod-delete", "node-drain", "node-unavailable"):
        for _ in range(5):
            write_record(
                new_record(
                    fault=fault, rules_version=RULES_VERSION, verdict="survived",
                    fingerprint=live, fault_actions=fault_actions(fault, live), prober=prober,
                ),
                directory, signer=signer,
            )  # fmt: skip
    steps = {
        "tofu-noop-plan": ["disposable_stack_noop_plan"],
        "backup-restore": [
            "versioned_restore_ok", "backup_copy_restore_ok", "retention_rules_reported",
            "state_key_backup_ok",
        ],
    }  # fmt: skip
    for fault, funcs in steps.items():
        module = "probes.tofu" if fault == "tofu-noop-plan" else "probes.backup"
        proof_steps = [
            {"name": f, "status": "succeeded", "provider": {"module": module, "func": f}}
            for f in funcs
        ]
        write_record(
            new_record(kind="proof", fault=fault, rules_version=RULES_VERSION, verdict="passed",
                       fingerprint=live, proof_steps=proof_steps),
            directory, signer=signer,
        )  # fmt: skip
    checks = [
        {"name": n, "ok": True, "duration_ms": 1.0}
        for n in ("list-buckets", "head-bucket", "state-key-head", "canary-write-read-delete",
                  "versioning-enabled", "lock-exclusive")
    ]  # fmt: skip
    write_record(
        new_record(kind="guard", fault="guard", rules_version=RULES_VERSION, verdict="passed",
                   fingerprint=live, checks=checks),
        directory, signer=signer,
    )  # fmt: skip


def bin_dir_variant(root: Path, rustfs: bool) -> Path:
    """A binary directory for preflight tests: stand-ins for every control-plane binary, and
    a stand-in RustFS only when ``rustfs``, so a refusal is tested in both states of the
    user's cache (CI's machine has no RustFS; a developer's may)."""
    from harness.lab.build import BINARIES
    from harness.lab.paths import RUSTFS_VERSION

    root.mkdir(parents=True, exist_ok=True)
    for name in BINARIES:
        (root / name).write_text("#!/bin/sh\nexit 0\n")
        (root / name).chmod(0o755)
    if rustfs:
        (root / "rustfs").write_text(f"#!/bin/sh\necho rustfs {RUSTFS_VERSION}\n")
        (root / "rustfs").chmod(0o755)
    return root
