"""Node loss that the lab's real control plane feels: kubelet stop, a crash, a hung node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from actions.nodes import make_node_unavailable, restore_node
from flywheel_chaos.kube.intents import INTENT_ANNOTATION
from harness.controls.lease import holding_lease
from harness.lab.cluster import STATE_NAMESPACE, Lab
from harness.processes import pid_alive, wait_until
from harness.record.evidence import record_files
from harness.record.verdict import fault_effect
from probes.state_authority import state_authority_serving_within
from tests.support.labkit import BIN, REPO, chaos_start, cli, s3_client

pytestmark = pytest.mark.lab
RUN_ENV = {"FLYWHEEL_NODE_FAULT_DURATION_S": "45"}

CHAOS = str(BIN / "chaos")


def _start(experiment: Path, env: dict[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    return chaos_start(experiment, env, tmp_path)


def _record(env: dict[str, str]) -> dict[str, Any]:
    (path,) = record_files(Path(env["FLYWHEEL_EVIDENCE_DIR"]))
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _ready(core: client.CoreV1Api, node: str = "bumble") -> str:
    conditions = core.read_node(node).status.conditions or []
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")


def _authority_pids(lab: Lab) -> list[int]:
    pids = []
    for pid_file in lab.paths.node_dir("bumble").glob("pods/*/rustfs.pid"):
        pids.append(int(pid_file.read_text()))
    return pids


def _ready_endpoints(core: client.CoreV1Api, lab: Lab) -> int:
    api = config.new_client_from_config(config_file=str(lab.paths.kubeconfig))
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        STATE_NAMESPACE, label_selector="kubernetes.io/service-name=attic-rustfs-openebs"
    )
    return sum(
        1
        for s in slices.items
        for e in s.endpoints or []
        if e.conditions is None or e.conditions.ready is not False
    )


def _head_ok(env: dict[str, str]) -> bool:
    try:
        s3_client(env).head_object(Bucket=env["TOFU_STATE_BUCKET"], Key=env["TOFU_STATE_KEY"])
        return True
    except Exception:
        return False


def _back(core: client.CoreV1Api) -> None:
    wait_until(lambda: _ready(core) == "True", 120, "bumble to be Ready again")
    state_authority_serving_within(within_s=120)


def test_kubelet_stop_leaves_the_pod_running_but_out_of_the_service_and_is_not_survived(
    lab: Lab, run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    process = _start(REPO / "experiments" / "node-unavailable.yaml", run_env, tmp_path)
    try:
        wait_until(lambda: _ready(core) != "True", 40, "bumble to go NotReady")
        pids = _authority_pids(lab)
        assert pids and all(pid_alive(p) for p in pids), "the server keeps running as a process"
        wait_until(lambda: _ready_endpoints(core, lab) == 0, 30, "its endpoint to be removed")
        wait_until(lambda: not _head_ok(run_env), 10, "S3 through the Service to be refused")
        assert all(pid_alive(p) for p in pids)
    finally:
        output, _ = process.communicate(timeout=400)
    record = _record(run_env)
    assert record["verdict"] == "not-survived", output[-3000:]
    assert record["fault_effect"]["took_effect"] is True
    assert "bumble Ready=Unknown" in record["fault_effect"]["why"]
    assert record["prober"]["longest_outage_ms"] > 30_000
    assert process.returncode == 1
    assert _ready(core) == "True" and _head_ok(run_env)
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})
    _back(core)


def test_a_crash_kills_at_once_and_power_on_restarts_the_pods_with_data_intact(
    lab: Lab, run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    key = "_flywheel-chaos/test/crash-survivor"
    body = os.urandom(4096)
    s3_client(run_env).put_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key, Body=body)
    before = _authority_pids(lab)
    process = _start(REPO / "experiments" / "node-crash.yaml", run_env, tmp_path)
    try:
        assert before, "no server process on bumble to crash"
        wait_until(lambda: not any(pid_alive(p) for p in before), 30, "the crash to kill them")
        # the supervisor answers once every killed group is gone (it waits up to 15 s)
        wait_until(
            lambda: lab.node_state("bumble").get("state") == "off", 20, "the supervisor's off"
        )
    finally:
        output, _ = process.communicate(timeout=400)
    record = _record(run_env)
    assert record["verdict"] == "not-survived", output[-3000:]
    assert "agent and pods killed" in record["fault_effect"]["why"]
    _back(core)
    assert lab.node_state("bumble")["state"] == "running"
    data = s3_client(run_env).get_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key)["Body"]
    assert data.read() == body
    s3_client(run_env).delete_object(Bucket=run_env["TOFU_STATE_BUCKET"], Key=key)


def test_a_stop_command_that_changes_nothing_is_aborted_and_the_intent_cleared(
    run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api
) -> None:
    experiment = yaml.safe_load((REPO / "experiments" / "node-unavailable.yaml").read_text())
    experiment["method"][0]["provider"]["arguments"]["confirm_within_s"] = 5
    path = tmp_path / "noop-command.yaml"
    path.write_text(yaml.safe_dump(experiment))
    env = {
        **run_env,
        "FLYWHEEL_NODE_FAULT_METHOD": "command",
        "FLYWHEEL_NODE_STOP_COMMAND": "true {node}",
        "FLYWHEEL_NODE_START_COMMAND": "true {node}",
    }
    process = _start(path, env, tmp_path)
    output, _ = process.communicate(timeout=300)
    record = _record(run_env)
    assert record["verdict"] == "aborted", output[-3000:]
    assert record["reasons"][0].startswith("fault did not take effect")
    action = record["fault_actions"][0]["output"]
    assert action["confirmed"] is False and action["stop"]["exit"] == 0
    assert record["rollbacks"][0]["status"] == "succeeded"
    assert _ready(core) == "True"
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})
    assert not list(Path(run_env["FLYWHEEL_STATE_DIR"]).glob("intents/*.json"))


def test_a_helper_pod_the_namespace_refuses_injects_nothing_and_proves_nothing(
    lab: Lab, run_env: dict[str, str], core: client.CoreV1Api
) -> None:
    namespace = "flywheel-restricted"
    try:
        core.create_namespace(
            {
                "metadata": {
                    "name": namespace,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                }
            }
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    with holding_lease():
        result = make_node_unavailable(
            "bumble", method="kubelet-stop", helper_namespace=namespace, duration_s=20
        )
        assert result["confirmed"] is False
        assert result["confirmation"].startswith("not injected: cannot create the kubelet-stop")
        assert "403" in result["confirmation"]
        action = {
            "name": "x",
            "status": "succeeded",
            "provider": {"module": "actions.nodes", "func": "make_node_unavailable"},
            "output": result,
        }
        owners = {uid for d in result["displaced_pods"] for uid in d["owner_uids"]}
        effect = fault_effect([action], owners, "node-unavailable")
        assert effect["took_effect"] is False
        assert restore_node("bumble")["kubelet_ready"] is True
    assert _ready(core) == "True"
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})


@pytest.mark.parametrize("method", ["kubelet-stop", "lab-freeze", "lab-crash"])
def test_kill_9_during_the_fault_then_recover_brings_bumble_back_and_leaves_no_intent(
    lab: Lab, run_env: dict[str, str], tmp_path: Path, core: client.CoreV1Api, method: str
) -> None:
    env = {**run_env, "FLYWHEEL_NODE_FAULT_METHOD": method}
    process = _start(REPO / "experiments" / "node-unavailable.yaml", env, tmp_path)
    try:
        wait_until(lambda: _ready(core) != "True", 40, f"{method} to take bumble down")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert INTENT_ANNOTATION in (core.read_node("bumble").metadata.annotations or {})
    recovered = cli(["recover"], run_env)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "bumble:" in recovered.stdout and "kubelet back, node Ready" in recovered.stdout
    assert _ready(core) == "True"
    assert INTENT_ANNOTATION not in (core.read_node("bumble").metadata.annotations or {})
    assert cli(["recover"], run_env).stdout.strip().startswith("nothing to recover")
    _back(core)
    helpers = core.list_namespaced_pod("flywheel-chaos").items
    assert [p.metadata.name for p in helpers] == []
